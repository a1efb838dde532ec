"""The test source (`camera.source: test`): the test pattern, encoded by libx264 in real time.

Drawing and encoding run on the source's one thread (a `ThreadHandover`), one frame per
real-time slot (`Pacer`): the thread opens the encoder, then draws, encodes and pushes the
frame due at each slot until it is stopped. The units are exactly what the Pi's encoder
produces (see `X264Encoder`). The pattern's counter is the frame slot number, so a skipped
slot shows up as a gap in the counters. `record_test_stream` writes the same stream to a
file for the file source.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType

from cvh_camera.appliance.bitrate import clamp_bitrate
from cvh_camera.appliance.sources import h264
from cvh_camera.appliance.sources.base import (
    AccessUnit,
    KeyframeRequest,
    SourceError,
    SourceStats,
    StatsCounter,
    check_geometry,
)
from cvh_camera.appliance.sources.handover import ThreadHandover, queue_size
from cvh_camera.appliance.sources.pacing import Pacer
from cvh_camera.appliance.sources.pattern import TestPattern
from cvh_camera.h264_profile import ENCODER_PROFILE

__all__ = ["SyntheticSource", "X264Encoder", "record_test_stream"]

log = logging.getLogger(__name__)


class SyntheticSource:
    def __init__(
        self,
        *,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        keyframe_interval: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_geometry(width, height, fps)
        self.name, self.width, self.height, self.fps = "test", width, height, fps
        self._clock = clock
        self._pattern = TestPattern(width, height)
        self._encoder = X264Encoder(
            width=width,
            height=height,
            fps=fps,
            bitrate=bitrate,
            keyframe_interval=keyframe_interval,
        )
        self._counter = StatsCounter()
        self._keyframe = KeyframeRequest()
        self._bitrate_lock = threading.Lock()
        self._pending_bitrate: int | None = None
        self._first_timestamp_us: int | None = None
        self._handover = ThreadHandover(
            self.name, maxsize=queue_size(fps), on_overflow=self.request_keyframe
        )

    async def start(self) -> None:
        await self._handover.start(self._produce)
        log.info("source=test started %dx%d@%d", self.width, self.height, self.fps)

    async def stop(self) -> None:
        await self._handover.stop()

    async def next_unit(self) -> AccessUnit:
        return await self._handover.get()

    def request_keyframe(self) -> None:
        self._keyframe.set()

    def set_bitrate(self, bits_per_second: int) -> None:
        """Takes effect at the next frame, which is then an IDR (libx264 is reopened)."""
        with self._bitrate_lock:
            self._pending_bitrate = bits_per_second

    @property
    def stats(self) -> SourceStats:
        return self._counter.snapshot(dropped=self._handover.dropped)

    def _produce(self, stop: threading.Event, ready: Callable[[], None]) -> None:
        """The handover's thread: one frame per real-time slot until `stop`."""
        try:
            self._encoder.open()
            ready()
            pacer = Pacer(self.fps, clock=self._clock)
            while (slot := pacer.next_slot(stop)) is not None:
                timestamp_us, skipped = slot
                if skipped:
                    self._counter.count_skipped(skipped)
                forced = self._keyframe.take()
                for unit in self._frame(timestamp_us, force_keyframe=forced):
                    self._counter.count_unit(keyframe=unit.keyframe, forced=forced)
                    self._handover.push(unit)
        finally:
            self._encoder.close()

    def _frame(self, timestamp_us: int, *, force_keyframe: bool) -> list[AccessUnit]:
        """The access units of the frame due at `timestamp_us`."""
        with self._bitrate_lock:
            bitrate, self._pending_bitrate = self._pending_bitrate, None
        if bitrate is not None and bitrate != self._encoder.bitrate:
            self._encoder.set_bitrate(bitrate)
            log.info("source=test bitrate=%d (encoder reopened)", self._encoder.bitrate)
        if self._first_timestamp_us is None:
            self._first_timestamp_us = timestamp_us
        counter = round((timestamp_us - self._first_timestamp_us) * self.fps / 1_000_000)
        frame = self._pattern.frame(counter)
        frame.pts = timestamp_us
        return [
            AccessUnit(data, pts, h264.is_keyframe(data))
            for data, pts in self._encoder.encode(frame, force_keyframe=force_keyframe)
        ]


class X264Encoder:
    """libx264 through PyAV, set up to produce what the Pi's hardware encoder hands over.

    Constrained baseline (x264's baseline sets constraint_set0 and constraint_set1: the SPS
    starts 42 c0), no B-frames, one slice per picture, zero latency (one packet out per frame
    in), Annex-B with SPS/PPS repeated on every IDR, an IDR every `keyframe_interval` frames
    and no scene-cut keyframes, bitrate-capped rate control (VBV of half a second).

    A forced keyframe is a frame with `pict_type = I` and x264's `forced-idr`: an IDR with
    SPS/PPS. libx264 ignores a bitrate change on an open context, so `set_bitrate` recreates
    the context before the next frame; a new context starts with an IDR. Not thread-safe: the
    thread that encodes owns it.
    """

    def __init__(
        self, *, width: int, height: int, fps: int, bitrate: int, keyframe_interval: int
    ) -> None:
        if keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be at least 1, got {keyframe_interval}")
        self.width, self.height, self.fps = width, height, fps
        self.keyframe_interval = keyframe_interval
        self.bitrate = clamp_bitrate(bitrate)
        self._context: av.VideoCodecContext | None = None

    def open(self) -> None:
        self._context = self._new_context(self.bitrate)

    def set_bitrate(self, bits_per_second: int) -> None:
        """Use this bitrate from the next frame on (which will then be an IDR)."""
        bitrate = clamp_bitrate(bits_per_second)
        if bitrate != self.bitrate:
            self.bitrate = bitrate
            self._context = None  # reopened by the next encode()

    def encode(
        self, frame: av.VideoFrame, *, force_keyframe: bool = False
    ) -> list[tuple[bytes, int]]:
        """Encode one frame (`pts` in µs): the access units that came out, with their pts."""
        if self._context is None:
            self._context = self._new_context(self.bitrate)
        frame.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        try:
            packets = self._context.encode(frame)
        except av.FFmpegError as exc:
            raise SourceError(f"libx264 failed to encode a frame: {exc}") from exc
        fallback = frame.pts if frame.pts is not None else 0
        return [
            (bytes(packet), packet.pts if packet.pts is not None else fallback)
            for packet in packets
        ]

    def close(self) -> None:
        self._context = None

    def _new_context(self, bitrate: int) -> av.VideoCodecContext:
        try:
            context = av.CodecContext.create("libx264", "w")
        except (ValueError, av.FFmpegError) as exc:
            raise SourceError(f"PyAV has no libx264 encoder: {exc}") from exc
        if not isinstance(context, av.VideoCodecContext):
            raise SourceError("PyAV's libx264 is not a video encoder")
        context.width, context.height = self.width, self.height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 1_000_000)
        context.framerate = Fraction(self.fps, 1)
        context.bit_rate = bitrate
        context.gop_size = self.keyframe_interval
        context.max_b_frames = 0
        context.thread_count = 1  # one slice per picture, like the Pi; no frame-thread delay
        context.options = {
            "profile": ENCODER_PROFILE,
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",
            "maxrate": str(bitrate),
            "bufsize": str(bitrate // 2),
            "x264-params": "repeat-headers=1:scenecut=0:annexb=1",
        }
        try:
            context.open()
        except av.FFmpegError as exc:
            raise SourceError(f"cannot open libx264 ({self.width}x{self.height}): {exc}") from exc
        log.debug("x264 opened %dx%d bitrate=%d", self.width, self.height, bitrate)
        return context


def record_test_stream(
    path: Path,
    *,
    width: int,
    height: int,
    fps: int,
    seconds: float,
    bitrate: int,
    keyframe_interval: int,
) -> int:
    """Write `seconds` of the test stream as an H.264 elementary stream; the frame count.

    Runs as fast as the encoder goes (no pacing) and blocks: from async code, run it in a
    thread. The first unit is an IDR with SPS/PPS, like every keyframe.
    """
    pattern = TestPattern(width, height)
    encoder = X264Encoder(
        width=width, height=height, fps=fps, bitrate=bitrate, keyframe_interval=keyframe_interval
    )
    encoder.open()
    frames = max(1, round(seconds * fps))
    try:
        with path.open("wb") as out:
            for n in range(frames):
                frame = pattern.frame(n)
                frame.pts = n * 1_000_000 // fps
                for data, _pts in encoder.encode(frame):
                    out.write(data)
    finally:
        encoder.close()
    return frames
