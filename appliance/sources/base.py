"""The camera source interface: H.264 access units out, keyframe requests and bitrate in.

Every source (picamera2, the synthetic test pattern, a replayed recording) hands over what a
hardware encoder produces: Annex-B access units, SPS/PPS in front of every IDR, capture
timestamps in microseconds. Everything downstream codes against `VideoSource` only. Beside
it, the small parts every source keeps: its counters and its keyframe-request latch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AccessUnit:
    data: bytes  # one access unit, Annex-B (00 00 00 01 start codes); keyframes carry SPS+PPS
    timestamp_us: int  # capture time in microseconds (monotonic clock, strictly increasing)
    keyframe: bool  # an IDR picture: a decoder can start here


class SourceError(Exception):
    """The source failed (camera gone, encoder died, file unreadable); the message says what."""


@dataclass(frozen=True)
class SourceStats:
    produced: int = 0  # units the encoder (or file) produced
    dropped: int = 0  # units dropped because the consumer fell behind (queue full)
    keyframes: int = 0  # keyframes among the produced units
    forced_keyframes: int = 0  # keyframes produced because request_keyframe() asked
    skipped: int = 0  # frame slots a paced source skipped because it ran late


class VideoSource(Protocol):
    name: str
    width: int
    height: int
    fps: int

    async def start(self) -> None:
        """Begin producing; raises SourceError with a clear message if it cannot."""

    async def stop(self) -> None:
        """Idempotent; stops and joins the source's threads within a bounded time."""

    async def next_unit(self) -> AccessUnit:
        """Wait for the next unit; raises SourceError if the source died or was stopped."""

    def request_keyframe(self) -> None:
        """Thread-safe, non-blocking: a unit produced soon after is a keyframe."""

    def set_bitrate(self, bits_per_second: int) -> None:
        """Non-blocking: the encoder uses this bitrate as soon as it can."""

    @property
    def stats(self) -> SourceStats: ...


class StatsCounter:
    """The counters behind `SourceStats`, safe to bump from a producer thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._produced = 0
        self._keyframes = 0
        self._forced = 0
        self._skipped = 0

    def count_unit(self, *, keyframe: bool, forced: bool = False) -> None:
        with self._lock:
            self._produced += 1
            self._keyframes += keyframe
            self._forced += keyframe and forced

    def count_skipped(self, slots: int) -> None:
        with self._lock:
            self._skipped += slots

    def snapshot(self, *, dropped: int) -> SourceStats:
        with self._lock:
            return SourceStats(
                produced=self._produced,
                dropped=dropped,
                keyframes=self._keyframes,
                forced_keyframes=self._forced,
                skipped=self._skipped,
            )


class KeyframeRequest:
    """A latch: any thread sets it, the producer takes it (test-and-clear)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = False

    def set(self) -> None:
        with self._lock:
            self._pending = True

    def take(self) -> bool:
        with self._lock:
            pending, self._pending = self._pending, False
            return pending


def check_geometry(width: int, height: int, fps: int) -> None:
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")
    if not 0 < fps <= 240:
        raise ValueError(f"fps must be between 1 and 240, got {fps}")
