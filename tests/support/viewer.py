"""A headless viewer: subscribes to one Janus VideoRoom feed with aiortc and decodes it.

For tests and benchmarks — it proves frames really arrive and decode, as a browser would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from cvh_camera.janus import JanusHandle, JanusSession

log = logging.getLogger(__name__)

FRAME_QUEUE = 120


@dataclass(frozen=True)
class DecodedFrame:
    frame: av.VideoFrame
    received: float  # time.monotonic() when decoded


class FeedViewer:
    def __init__(
        self, http: aiohttp.ClientSession, janus_url: str, room: int, pin: str = ""
    ) -> None:
        self._http = http
        self._url = janus_url
        self._room = room
        self._pin = pin
        self._session: JanusSession | None = None
        self._handle: JanusHandle | None = None
        self._pc: RTCPeerConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.frames: asyncio.Queue[DecodedFrame] = asyncio.Queue(FRAME_QUEUE)
        self.started_at: float | None = None  # monotonic time of the `start` request

    async def watch(self, feed_id: int, timeout: float = 10.0) -> None:
        """Subscribe to `feed_id`; frames then arrive in `self.frames`."""
        self._session = await JanusSession.create(self._http, self._url)
        self._handle = await self._session.attach("janus.plugin.videoroom")
        body: dict[str, Any] = {
            "request": "join",
            "ptype": "subscriber",
            "room": self._room,
            "streams": [{"feed": feed_id}],
        }
        if self._pin:
            body["pin"] = self._pin
        _, offer = await self._handle.message(body, timeout=timeout)
        if offer is None:
            raise RuntimeError("Janus attached the subscriber without an SDP offer")
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc.on("track", self._on_track)
        await self._pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        answer = {"type": "answer", "sdp": self._pc.localDescription.sdp}
        self.started_at = time.monotonic()
        await self._handle.message({"request": "start"}, answer, timeout=timeout)

    async def next_frame(self, timeout: float = 10.0) -> DecodedFrame:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pc is not None:
            await self._pc.close()
        if self._session is not None:
            await self._session.destroy()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._reader is None:
            self._reader = asyncio.create_task(self._read(track), name="viewer-track")

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.VideoFrame):
                    continue
                decoded = DecodedFrame(frame, time.monotonic())
                if self.frames.full():
                    self.frames.get_nowait()  # keep the newest
                self.frames.put_nowait(decoded)
