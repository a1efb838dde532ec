"""Publishing the camera into a Janus VideoRoom with aiortc, without re-encoding.

One `JanusPublisher` is one attempt: a Janus session and VideoRoom handle, a join as
publisher, an aiortc peer connection offering only H.264 constrained baseline, and the
wait for Janus's `webrtcup`. `wait_lost()` returns why it ended (Janus session lost,
hangup, ICE failure), or raises the camera's SourceError when the camera failed;
`close()` leaves the room and destroys the session, so no stale publisher keeps the seat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from cvh_camera.appliance.aiortc_glue import (
    AiortcChanged,
    forward_feedback,
    h264_preferences,
    replace_rtp_loop,
)
from cvh_camera.appliance.rtp_loop import H264RtpLoop
from cvh_camera.appliance.sources.base import SourceError, VideoSource
from cvh_camera.appliance.throttle import Throttle
from cvh_camera.appliance.track import H264PacketTrack
from cvh_camera.janus import JanusHandle, JanusSession, JanusUnavailable
from cvh_camera.tasks import stop_tasks

log = logging.getLogger(__name__)

WEBRTC_UP_TIMEOUT = 15.0
CLOSE_TIMEOUT = 3.0
END_EVENTS = ("hangup", "detached")


@dataclass(frozen=True)
class PublishedFeed:
    """What the slot server needs to know of our publisher (`set_feed_id`)."""

    feed_id: int
    session_id: int
    handle_id: int


@dataclass(frozen=True)
class PublishTarget:
    janus_url: str
    room: int
    pin: str
    display: str
    ice_servers: tuple[str, ...] = ()


NackHandler = Callable[[Sequence[int]], Awaitable[None]]


def send_with_our_rtp_loop(sender: RTCRtpSender, track: H264PacketTrack) -> NackHandler | None:
    """Run our RTP loop on `sender` and return its NACK handler; or, if aiortc changed
    under us, leave aiortc's own loop in place (it works, at more CPU) and return None."""
    rtp = H264RtpLoop(track)
    try:
        link = replace_rtp_loop(sender, rtp.run)
    except AiortcChanged as error:
        log.warning("sending with aiortc's own RTP loop (more CPU): %s", error)
        return None
    return lambda sequences: rtp.retransmit(sequences, link)


class JanusPublisher:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        target: PublishTarget,
        source: VideoSource,
        *,
        on_bitrate_estimate: Callable[[int], None],
    ) -> None:
        self._http = http
        self._target = target
        self._source = source
        self._on_bitrate_estimate = on_bitrate_estimate
        self._session: JanusSession | None = None
        self._handle: JanusHandle | None = None
        self._pc: RTCPeerConnection | None = None
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._camera_error: SourceError | None = None
        self._watch: asyncio.Task[None] | None = None
        self._keyframes = Throttle(source.request_keyframe)

    async def publish(self) -> PublishedFeed:
        """Join and publish; returns once Janus reports the media flowing (`webrtcup`)."""
        self._session = await JanusSession.create(self._http, self._target.janus_url)
        self._handle = await self._session.attach("janus.plugin.videoroom")
        feed_id = await self._join(self._handle)
        self._pc = self._peer_connection()
        offer = await self._offer(self._pc)
        body = {"request": "publish", "audio": False, "video": True, "data": False}
        _, answer = await self._handle.message(body, offer, timeout=WEBRTC_UP_TIMEOUT)
        if answer is None or answer.get("type") != "answer":
            raise JanusUnavailable("Janus answered publish without an SDP answer")
        await self._pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await self._wait_webrtcup(self._handle)
        self._watch = asyncio.create_task(self._watch_end(), name="publisher-watch")
        feed = PublishedFeed(feed_id, self._session.id, self._handle.id)
        log.info(
            "publishing room=%d feed=%d session=%d", self._target.room, feed_id, feed.session_id
        )
        return feed

    async def wait_lost(self) -> str:
        """Wait until publishing ended; returns the reason (SourceError: the camera failed)."""
        reason = await asyncio.shield(self._ended)
        if self._camera_error is not None:
            raise self._camera_error
        return reason

    async def close(self) -> None:
        """Leave the room, close the peer connection, destroy the session. Never raises."""
        self._end("closed")
        if self._watch is not None:
            await stop_tasks([self._watch], CLOSE_TIMEOUT)
        if self._handle is not None and self._session is not None and not self._session.lost:
            with contextlib.suppress(Exception):
                await self._handle.message({"request": "leave"}, timeout=2.0)
        if self._pc is not None:
            await self._pc.close()
        if self._session is not None:
            await self._session.destroy()

    # ------------------------------------------------------------- internals

    async def _join(self, handle: JanusHandle) -> int:
        body: dict[str, Any] = {
            "request": "join",
            "ptype": "publisher",
            "room": self._target.room,
            "display": self._target.display,
        }
        if self._target.pin:
            body["pin"] = self._target.pin
        joined, _ = await handle.message(body)
        feed_id = joined.get("id")
        if not isinstance(feed_id, int):
            raise JanusUnavailable(f"Janus joined without a publisher id: {joined}")
        return feed_id

    def _peer_connection(self) -> RTCPeerConnection:
        servers = [RTCIceServer(urls=url) for url in self._target.ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))  # [] = no STUN at all
        track = H264PacketTrack(self._source, on_source_failed=self._camera_failed)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(h264_preferences())
        forward_feedback(
            transceiver.sender,
            on_keyframe_request=self._keyframes,
            on_bitrate_estimate=self._on_bitrate_estimate,
            on_nack=send_with_our_rtp_loop(transceiver.sender, track),
        )

        @pc.on("connectionstatechange")
        def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self._end(f"peer connection {pc.connectionState}")

        return pc

    @staticmethod
    async def _offer(pc: RTCPeerConnection) -> dict[str, str]:
        await pc.setLocalDescription(await pc.createOffer())  # gathers ICE candidates
        return {"type": "offer", "sdp": pc.localDescription.sdp}

    async def _wait_webrtcup(self, handle: JanusHandle) -> None:
        async with asyncio.timeout(WEBRTC_UP_TIMEOUT):
            while True:
                event = await handle.next_event()
                kind = event.get("janus")
                if kind == "webrtcup":
                    return
                if kind in END_EVENTS:
                    raise JanusUnavailable(f"Janus ended the publisher before media: {kind}")

    async def _watch_end(self) -> None:
        if self._handle is None:
            return
        try:
            while True:
                event = await self._handle.next_event()
                if event.get("janus") in END_EVENTS:
                    self._end(f"Janus {event.get('janus')}: {event.get('reason', '')}".strip())
                    return
        except JanusUnavailable as error:
            self._end(f"Janus session lost: {error}")

    def _camera_failed(self, error: SourceError) -> None:
        if not self._ended.done():
            self._camera_error = error
        self._end(f"the camera failed: {error}")

    def _end(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)
