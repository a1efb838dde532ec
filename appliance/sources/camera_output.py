"""From picamera2's encoder thread to the unit queue: our `Output` and what it does per frame.

`make_output()` subclasses picamera2's `Output` (passed in: picamera2 is imported elsewhere,
and only on the Pi). Its `outputframe()` runs on the encoder's thread and hands the bytes to
a `FrameSink`, which never blocks and never raises into picamera2:

- a buffer without a slice (SPS/PPS alone, as some encoders emit first) is held and put in
  front of the next picture;
- the keyframe flag is read from the NAL types (an IDR slice), IDRs lacking SPS/PPS get the
  last ones seen, and the profile of the first SPS is logged;
- encoder timestamps (µs since the encoder's first frame, restarting at 0 with every encoder)
  become monotonic-clock µs that increase strictly across encoder restarts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cvh_camera.appliance.sources import h264
from cvh_camera.appliance.sources.base import AccessUnit, KeyframeRequest, SourceError, StatsCounter
from cvh_camera.h264_profile import is_constrained_baseline

log = logging.getLogger(__name__)


class TimestampMapper:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._base: int | None = None
        self._last: int | None = None

    def new_epoch(self) -> None:
        """The encoder restarted: its timestamps begin anew."""
        self._base = None

    def map(self, encoder_us: int | None) -> int:
        now = round(self._clock() * 1_000_000)
        if encoder_us is None:
            mapped = now
        else:
            if self._base is None:
                self._base = now - int(encoder_us)
            mapped = self._base + int(encoder_us)
        if self._last is not None and mapped <= self._last:
            mapped = self._last + 1
        self._last = mapped
        return mapped


class FrameSink:
    def __init__(
        self,
        push: Callable[[AccessUnit], None],
        counter: StatsCounter,
        *,
        clock: Callable[[], float],
        on_error: Callable[[SourceError], None],
    ) -> None:
        self._push = push
        self._counter = counter
        self._clock = clock
        self._on_error = on_error
        self._timestamps = TimestampMapper(clock)
        self._parameter_sets = h264.ParameterSetCache()
        self._held = b""
        self._lock = threading.Lock()  # encoder threads change at restarts
        self.forced = KeyframeRequest()  # set when a keyframe was asked of the encoder
        self.last_unit_at: float | None = None
        self._profile_logged = False

    def new_epoch(self) -> None:
        with self._lock:
            self._timestamps.new_epoch()
            self._held = b""

    def __call__(self, data: bytes, encoder_us: int | None) -> None:
        try:
            with self._lock:
                unit = self._assemble(data, encoder_us)
            if unit is not None:
                self._counter.count_unit(
                    keyframe=unit.keyframe, forced=unit.keyframe and self.forced.take()
                )
                self.last_unit_at = self._clock()
                self._push(unit)
        except Exception as exc:  # never into picamera2's thread
            log.exception("source=picamera2 output failed")
            self._on_error(SourceError(f"the camera output failed: {exc}"))

    def _assemble(self, data: bytes, encoder_us: int | None) -> AccessUnit | None:
        if not h264.has_slice(data):
            self._held += data
            return None
        if self._held:
            data, self._held = self._held + data, b""
        keyframe = h264.is_keyframe(data)
        if keyframe:
            data = self._parameter_sets.apply(data)
            self._log_profile()
        return AccessUnit(data, self._timestamps.map(encoder_us), keyframe)

    def _log_profile(self) -> None:
        sps = self._parameter_sets.sps
        if self._profile_logged or sps is None:
            return
        self._profile_logged = True
        profile = h264.profile_level_id(sps)
        level = logging.INFO if is_constrained_baseline(profile) else logging.WARNING
        log.log(
            level,
            "source=picamera2 profile-level-id=%s (constrained baseline: 42c0xx or 42e0xx)",
            profile,
        )


def make_output(base: Any, sink: Callable[[bytes, int | None], None]) -> Any:
    """An instance of a subclass of picamera2's `Output` that feeds `sink`."""

    class QueueOutput(base):  # type: ignore[misc]
        def outputframe(
            self,
            frame: Any,
            keyframe: bool = True,
            timestamp: int | None = None,
            packet: Any = None,
            audio: bool = False,
        ) -> None:
            if audio or frame is None:
                return
            sink(bytes(frame), timestamp)

    return QueueOutput()
