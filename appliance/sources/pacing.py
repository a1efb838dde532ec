"""Real-time frame slots on the monotonic clock.

Slot n is due at t0 + n / fps, computed from t0 each time, so rounding never accumulates into
drift. A producer that falls a whole slot or more behind skips the missed slots (and is told
how many) instead of bursting to catch up, like a camera that drops frames. A thread waits
for its slot with `next_slot`, a coroutine with `wait_slot`.
"""

from __future__ import annotations

import asyncio
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
        due, skipped = self._advance()
        delay = due - self._clock()
        if delay > 0 and stop.wait(delay):
            return None
        return round(due * 1_000_000), skipped

    async def wait_slot(self) -> tuple[int, int]:
        """Sleep until the next slot: (its time in µs, slots skipped). Needs a clock that
        runs with the event loop's (time.monotonic does)."""
        due, skipped = self._advance()
        delay = due - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        return round(due * 1_000_000), skipped

    def _advance(self) -> tuple[float, int]:
        """Move to the next slot that is not past: (when it is due, slots skipped)."""
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._index / self._fps
        skipped = 0
        if now > due:
            skipped = int((now - due) * self._fps)  # whole slots already past
            self._index += skipped
            due = self._t0 + self._index / self._fps
        self._index += 1
        return due, skipped
