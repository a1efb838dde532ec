"""Keyframe requests, thinned out.

A viewer that cannot decode asks for a keyframe with every picture (aiortc: ~30 PLI/s),
and Janus passes each on. A keyframe costs several times a normal picture, so after
forcing one the camera ignores further requests for a short hold-off: the keyframe it
just made is on its way to whoever asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable

KEYFRAME_HOLD_OFF = 0.3  # seconds


class Throttle:
    """Calls `action` at most once per `interval` seconds; calls in between are dropped."""

    def __init__(
        self,
        action: Callable[[], None],
        interval: float = KEYFRAME_HOLD_OFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._action = action
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self.dropped = 0

    def __call__(self) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self.dropped += 1
            return
        self._last = now
        self._action()
