"""The baseline publisher of `bench.publisher_cpu`: the appliance's job done the usual aiortc way.

It decodes an H.264 recording into pictures once, up front (a camera without a hardware
encoder hands over pictures; decoding is not part of what is measured), then publishes them
at `--fps` into the Janus VideoRoom through the same HTTP API path as the appliance (join as
publisher, offer H.264 constrained baseline only, `publish`, wait for `webrtcup`), giving
aiortc `av.VideoFrame`s so that aiortc's own H.264 encoder (libx264, its own settings)
encodes them. Its bitrate follows Janus's REMB as aiortc does on its own: the room's
bitrate is the target.

Talks JSON lines on stdout:
- once publishing: {"event": "publishing", "feed": id, "frames": n, "decode_cpu_s": s, …};
- on SIGUSR1, at once: {"event": "stats", "mono": time.monotonic(), "frames": sent,
  "skipped": late slots skipped, "bytes": RTP bytes sent}.
SIGTERM/SIGINT: leave the room, destroy the Janus session, exit 0.

    python -m bench.aiortc_encoding_publisher --janus-url URL --room N --recording FILE
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from cvh_camera.appliance.aiortc_glue import h264_preferences
from cvh_camera.janus import JanusHandle, JanusSession
from cvh_camera.logsetup import setup_logging

log = logging.getLogger("bench.aiortc_encoding_publisher")

CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)
WEBRTC_UP_TIMEOUT = 15.0


def decode_recording(path: Path) -> list[av.VideoFrame]:
    """Every picture of an H.264 elementary stream, as yuv420p frames (what x264 takes)."""
    frames: list[av.VideoFrame] = []
    with av.open(str(path), format="h264") as container:
        for frame in container.decode(video=0):
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            frames.append(frame)
    if not frames:
        raise SystemExit(f"{path}: no pictures decoded")
    return frames


class LoopedPictures(MediaStreamTrack):
    """The pictures in a loop, one per real-time slot; a slot missed is skipped, not caught up
    (like a camera), and counted."""

    kind = "video"

    def __init__(self, frames: list[av.VideoFrame], fps: int) -> None:
        super().__init__()
        self._frames = frames
        self._fps = fps
        self._start: float | None = None
        self._slot = 0
        self.sent = 0
        self.skipped = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._slot / self._fps
        if now < due:
            await asyncio.sleep(due - now)
        else:
            late = int((now - due) * self._fps)
            self.skipped += late
            self._slot += late
        frame = self._frames[self._slot % len(self._frames)]
        frame.pts = self._slot * CLOCK_RATE // self._fps
        frame.time_base = TIME_BASE
        self._slot += 1
        self.sent += 1
        return frame


class Publisher:
    def __init__(self, http: aiohttp.ClientSession, url: str, room: int, track: LoopedPictures):
        self._http, self._url, self._room, self.track = http, url, room, track
        self.session: JanusSession | None = None
        self.handle: JanusHandle | None = None
        self.pc: RTCPeerConnection | None = None

    async def publish(self) -> int:
        self.session = await JanusSession.create(self._http, self._url)
        self.handle = await self.session.attach("janus.plugin.videoroom")
        body = {"request": "join", "ptype": "publisher", "room": self._room, "display": "aiortc"}
        joined, _ = await self.handle.message(body)
        feed_id = joined.get("id")
        if not isinstance(feed_id, int):
            raise RuntimeError(f"joined without a publisher id: {joined}")
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(h264_preferences())
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        publish = {"request": "publish", "audio": False, "video": True, "data": False}
        _, answer = await self.handle.message(publish, offer, timeout=WEBRTC_UP_TIMEOUT)
        if answer is None:
            raise RuntimeError("publish answered without an SDP answer")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        async with asyncio.timeout(WEBRTC_UP_TIMEOUT):
            while (await self.handle.next_event()).get("janus") != "webrtcup":
                pass
        return feed_id

    async def bytes_sent(self) -> int:
        if self.pc is None:
            return 0
        total = 0
        for sender in self.pc.getSenders():
            for stats in (await sender.getStats()).values():
                if getattr(stats, "type", "") == "outbound-rtp":
                    total += int(getattr(stats, "bytesSent", 0))
        return total

    async def close(self) -> None:
        if self.handle is not None and self.session is not None and not self.session.lost:
            try:
                await self.handle.message({"request": "leave"}, timeout=2.0)
            except Exception as error:  # best effort on the way out
                log.info("leave not confirmed: %s", error)
        if self.pc is not None:
            await self.pc.close()
        if self.session is not None:
            await self.session.destroy()


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def report_stats(publisher: Publisher, asked: asyncio.Queue[None]) -> None:
    """One stats line per SIGUSR1, until cancelled."""
    while True:
        await asked.get()
        mono, frames, skipped = time.monotonic(), publisher.track.sent, publisher.track.skipped
        say(event="stats", mono=mono, frames=frames, skipped=skipped,
            bytes=await publisher.bytes_sent())  # fmt: skip


async def run(args: argparse.Namespace) -> None:
    cpu = time.process_time()
    frames = decode_recording(args.recording)
    decode_cpu = time.process_time() - cpu
    loop, stop, asked = asyncio.get_running_loop(), asyncio.Event(), asyncio.Queue[None]()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    async with aiohttp.ClientSession() as http:
        publisher = Publisher(http, args.janus_url, args.room, LoopedPictures(frames, args.fps))
        try:
            feed_id = await publisher.publish()
            loop.add_signal_handler(signal.SIGUSR1, asked.put_nowait, None)
            size = {"width": frames[0].width, "height": frames[0].height}
            say(event="publishing", feed=feed_id, frames=len(frames), **size,
                decode_cpu_s=round(decode_cpu, 3))  # fmt: skip
            async with asyncio.TaskGroup() as group:
                reporter = group.create_task(report_stats(publisher, asked), name="stats")
                await stop.wait()
                reporter.cancel()
        finally:
            await publisher.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--janus-url", required=True)
    parser.add_argument("--room", type=int, required=True)
    parser.add_argument("--recording", type=Path, required=True, help="H.264 elementary stream")
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    setup_logging("info")
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
