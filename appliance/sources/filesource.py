"""The file source (`camera.source: file`): a recorded H.264 elementary stream, replayed.

What a hardware encoder hands over, at almost no CPU cost of ours: the file (Annex-B, at most
`MAX_FILE_BYTES`) is read once, on a short-lived thread, and split into access units; then
`next_unit()` hands over one unit per real-time slot, looping forever. It paces on the event
loop itself: a recording in memory needs no thread, and a thread hand-over per picture would
cost more than sending the picture (bench/RESULTS.md). Playback starts at the first
keyframe, so every loop starts with an IDR, and timestamps keep increasing across loops.
IDRs that lack SPS/PPS get the last ones seen. A consumer that falls behind gets the next
unit in order at a later slot (counted as skipped slots), never a gap in the stream.

`request_keyframe()` is honoured the way a camera would: the next unit handed over is a
keyframe, by jumping ahead to the next keyframe in the file (wrapping to the start); the
picture skips forward by less than one keyframe interval. `set_bitrate()` cannot apply: the
recording has its bitrate; it is logged and ignored. The picture size is read from the
stream (by decoding its first keyframe), not taken from the configuration.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import logging
import time
from collections.abc import Callable
from pathlib import Path

import av

from cvh_camera.appliance.sources import h264
from cvh_camera.appliance.sources.base import (
    AccessUnit,
    KeyframeRequest,
    SourceError,
    SourceStats,
    StatsCounter,
    check_geometry,
)
from cvh_camera.appliance.sources.pacing import Pacer

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 200 * 1024 * 1024


class FileSource:
    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: int,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        check_geometry(width, height, fps)
        self.name, self.width, self.height, self.fps = "file", width, height, fps
        self.path = path
        self._counter = StatsCounter()
        self._keyframe = KeyframeRequest()
        self._clock = clock
        self._max_bytes = max_bytes
        self._pacer: Pacer | None = None  # set while running
        self._units: list[bytes] = []
        self._keyframes: list[int] = []  # indices of the keyframe units, ascending
        self._keyframe_set: frozenset[int] = frozenset()
        self._position = 0
        self._bitrate_logged = False

    async def start(self) -> None:
        if self._pacer is not None:
            raise SourceError("the file source is already running")
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="file-load") as pool:
            await loop.run_in_executor(pool, self._load)
        self._position = 0
        self._pacer = Pacer(self.fps, clock=self._clock)
        log.info("source=file started %dx%d@%d", self.width, self.height, self.fps)

    async def stop(self) -> None:
        self._pacer = None
        self._units = []

    async def next_unit(self) -> AccessUnit:
        pacer = self._pacer
        if pacer is None:
            raise SourceError("the file source is not running")
        timestamp_us, skipped = await pacer.wait_slot()
        if self._pacer is not pacer:
            raise SourceError("the file source stopped")
        if skipped:
            self._counter.count_skipped(skipped)
        forced = self._keyframe.take()
        unit = self._unit_at(timestamp_us, force_keyframe=forced)
        self._counter.count_unit(keyframe=unit.keyframe, forced=forced)
        return unit

    def request_keyframe(self) -> None:
        self._keyframe.set()

    def set_bitrate(self, bits_per_second: int) -> None:
        level = logging.DEBUG if self._bitrate_logged else logging.INFO
        log.log(level, "source=file bitrate=%d ignored: a recording has its own", bits_per_second)
        self._bitrate_logged = True

    @property
    def stats(self) -> SourceStats:
        return self._counter.snapshot(dropped=0)  # nothing is queued: nothing is dropped

    def _load(self) -> None:
        units = load_access_units(self.path, max_bytes=self._max_bytes)
        width, height = probe_size(units[0], self.path)
        if (width, height) != (self.width, self.height):
            log.info(
                "source=file path=%s size=%dx%d (not the configured %dx%d)",
                self.path, width, height, self.width, self.height,
            )  # fmt: skip
            self.width, self.height = width, height
        self._keyframes = [i for i, unit in enumerate(units) if h264.is_keyframe(unit)]
        self._keyframe_set = frozenset(self._keyframes)
        self._units = units
        log.info(
            "source=file path=%s units=%d keyframes=%d",
            self.path, len(units), len(self._keyframes),
        )  # fmt: skip

    def _unit_at(self, timestamp_us: int, *, force_keyframe: bool) -> AccessUnit:
        if force_keyframe and self._position not in self._keyframe_set:
            at = bisect.bisect_left(self._keyframes, self._position)
            self._position = self._keyframes[at] if at < len(self._keyframes) else 0
        data = self._units[self._position]
        keyframe = self._position in self._keyframe_set
        self._position = (self._position + 1) % len(self._units)
        return AccessUnit(data, timestamp_us, keyframe)


def load_access_units(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> list[bytes]:
    """The file's access units from its first keyframe on, each IDR with SPS/PPS."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SourceError(
                f"{path} is {size / 2**20:.0f} MiB; the file source reads at most "
                f"{max_bytes / 2**20:.0f} MiB"
            )
        stream = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read the recording {path}: {exc.strerror or exc}") from exc
    units = h264.split_access_units(stream)
    del stream
    cache = h264.ParameterSetCache()
    units = [cache.apply(unit) for unit in units]
    first = next(
        (i for i, u in enumerate(units) if h264.is_keyframe(u) and h264.has_parameter_sets(u)),
        None,
    )
    if first is None:
        raise SourceError(
            f"{path} holds no H.264 keyframe with SPS/PPS (is it an Annex-B elementary stream?)"
        )
    return units[first:]


def probe_size(keyframe: bytes, path: Path) -> tuple[int, int]:
    """The picture size of an IDR access unit, by decoding it."""
    decoder = av.CodecContext.create("h264", "r")
    try:
        frames = decoder.decode(av.Packet(keyframe))
        frames += decoder.decode(None)
    except av.FFmpegError as exc:
        raise SourceError(f"{path}: the first keyframe does not decode: {exc}") from exc
    if not frames or not isinstance(frames[0], av.VideoFrame):
        raise SourceError(f"{path}: the first keyframe does not decode to a picture")
    return frames[0].width, frames[0].height
