"""Real-time frame slots on the monotonic clock.

Slot n is due at t0 + n / fps, computed from t0 each time, so rounding never accumulates into
drift. A producer that falls a whole slot or more behind skips the missed slots (and is told
how many) instead of bursting to catch up, like a camera that drops frames.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    def __init__(self, fps: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self._fps = fps
        self._clock = clock
        self._t0: float | None = None
        self._index = 0

    def next_slot(self, stop: threading.Event) -> tuple[int, int] | None:
        """Wait for the next slot: (its time in µs, slots skipped), or None once `stop` is set."""
        if stop.is_set():
            return None
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._index / self._fps
        skipped = 0
        if now < due:
            if stop.wait(due - now):
                return None
        else:
            skipped = int((now - due) * self._fps)  # whole slots already past
            self._index += skipped
            due = self._t0 + self._index / self._fps
        self._index += 1
        return round(due * 1_000_000), skipped
