"""The bounded hand-over of access units from a producer thread to asyncio.

`push()` may be called from any thread and never blocks (one short lock, no waiting). When the
queue is full the unit is dropped, and so is every following unit until the next keyframe:
a decoder cannot use P-frames after a gap. The queue then asks the source for a keyframe
(`on_overflow`) so that the gap stays short. A keyframe that arrives while the queue is still
full replaces the stale backlog: fresh video beats old video. The queue also starts in the
"waiting for a keyframe" state, so a consumer always begins at a keyframe.

Only a waiting consumer is woken, with `loop.call_soon_threadsafe`, so a stalled event loop
never accumulates more than one callback per `get()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Callable

from cvh_camera.appliance.sources.base import AccessUnit, SourceError


class UnitQueue:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        maxsize: int,
        on_overflow: Callable[[], None] | None = None,
        name: str = "source",
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self._loop = loop
        self._maxsize = maxsize
        self._on_overflow = on_overflow
        self._name = name
        self._lock = threading.Lock()
        self._units: collections.deque[AccessUnit] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._need_keyframe = True
        self._dropped = 0
        self._closed = False
        self._error: SourceError | None = None

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def __len__(self) -> int:
        with self._lock:
            return len(self._units)

    def push(self, unit: AccessUnit) -> None:
        """Hand over one unit; from any thread, never blocks."""
        waiter = None
        with self._lock:
            if self._closed:
                return
            accepted, overflowed = self._admit(unit)
            if accepted:
                self._units.append(unit)
                waiter, self._waiter = self._waiter, None
        if overflowed and self._on_overflow is not None:
            self._on_overflow()
        if waiter is not None:
            self._wake(waiter)

    def _admit(self, unit: AccessUnit) -> tuple[bool, bool]:
        """The drop policy, with the lock held: (accept the unit, the queue just overflowed)."""
        if unit.keyframe:
            if len(self._units) >= self._maxsize:  # the backlog is stale: replace it
                self._dropped += len(self._units)
                self._units.clear()
            self._need_keyframe = False
            return True, False
        if self._need_keyframe:
            self._dropped += 1
            return False, False
        if len(self._units) >= self._maxsize:
            self._dropped += 1
            self._need_keyframe = True
            return False, True
        return True, False

    async def get(self) -> AccessUnit:
        """The next unit; raises SourceError once the queue is closed."""
        while True:
            with self._lock:
                if self._closed:
                    raise self._error or SourceError(f"{self._name} source stopped")
                if self._units:
                    return self._units.popleft()
                waiter = self._loop.create_future()
                self._waiter = waiter
            try:
                await waiter
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None

    def close(self, error: SourceError | None = None) -> None:
        """Stop accepting units and wake the consumer; from any thread, idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._error = error
            self._units.clear()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._wake(waiter)

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to wake
            self._loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
