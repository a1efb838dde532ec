"""The test source (`camera.source: test`): the test pattern, encoded by libx264 in real time.

Drawing and encoding run on the source's one worker thread, one frame per real-time slot; the
units are exactly what the Pi's encoder produces (see `x264`). The pattern's counter is the
frame slot number, so a skipped slot shows up as a gap in the counters.
`record_test_stream` writes the same stream to a file for the file source.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cvh_camera.appliance.sources import h264
from cvh_camera.appliance.sources.base import AccessUnit
from cvh_camera.appliance.sources.paced import PacedSource
from cvh_camera.appliance.sources.pattern import TestPattern
from cvh_camera.appliance.sources.x264 import X264Encoder

__all__ = ["SyntheticSource", "record_test_stream"]

log = logging.getLogger(__name__)


class SyntheticSource(PacedSource):
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
        super().__init__(name="test", width=width, height=height, fps=fps, clock=clock)
        self._pattern = TestPattern(width, height)
        self._encoder = X264Encoder(
            width=width,
            height=height,
            fps=fps,
            bitrate=bitrate,
            keyframe_interval=keyframe_interval,
        )
        self._bitrate_lock = threading.Lock()
        self._pending_bitrate: int | None = None
        self._first_timestamp_us: int | None = None

    def set_bitrate(self, bits_per_second: int) -> None:
        """Takes effect at the next frame, which is then an IDR (libx264 is reopened)."""
        with self._bitrate_lock:
            self._pending_bitrate = bits_per_second

    def _prepare(self) -> None:
        self._encoder.open()

    def _produce(self, timestamp_us: int, *, force_keyframe: bool) -> list[AccessUnit]:
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

    def _release(self) -> None:
        self._encoder.close()


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
