"""The hand-over from a producer thread to asyncio: one owned thread and the bounded unit queue.

A source whose units come from a thread composes one `ThreadHandover` (the test pattern's
encoder loop runs on its thread; the picamera2 source's control thread does, and picamera2's
encoder thread pushes):

    handover = ThreadHandover("test", maxsize=queue_size(fps), on_overflow=request_keyframe)
    await handover.start(producer)   # producer(stop, ready) runs on the handover's thread
    unit = await handover.get()      # on the event loop
    await handover.stop()

The producer prepares, calls `ready()` (`start()` returns then), pushes units with
`handover.push()` and returns once `stop` is set. An exception before `ready()` is raised by
`start()` (a SourceError as it is, anything else as "cannot start"); one after it ends the
stream: the consumer's next `get()` raises a SourceError. `stop()` closes the queue, sets
`stop` and waits for the thread for at most `stop_timeout`: a thread stuck in a driver call is
logged and abandoned (it is a daemon), never waited for forever. A stopped or failed handover
can be started again.

The queue (`UnitQueue`): `push()` may be called from any thread and never blocks (one short
lock, no waiting). When the queue is full the unit is dropped, and so is every following unit
until the next keyframe: a decoder cannot use P-frames after a gap. The queue then asks the
source for a keyframe (`on_overflow`) so that the gap stays short. A keyframe that arrives
while the queue is still full replaces the stale backlog: fresh video beats old video. The
queue also starts in the "waiting for a keyframe" state, so a consumer always begins at a
keyframe. Only a waiting consumer is woken, with `loop.call_soon_threadsafe`, so a stalled
event loop never accumulates more than one callback per `get()`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable

from cvh_camera.appliance.sources.base import AccessUnit, SourceError

__all__ = ["Producer", "ThreadHandover", "UnitQueue", "queue_size"]

log = logging.getLogger(__name__)

QUEUE_SECONDS = 1.0  # the unit queue holds about this much video before it drops

# producer(stop, ready), on the handover's thread: call ready() once running, return once stop.
Producer = Callable[[threading.Event, Callable[[], None]], None]


def queue_size(fps: int) -> int:
    return max(4, round(fps * QUEUE_SECONDS))


class ThreadHandover:
    def __init__(
        self,
        name: str,
        *,
        maxsize: int,
        on_overflow: Callable[[], None] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.name = name
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._maxsize = maxsize
        self._on_overflow = on_overflow
        self._queue: UnitQueue | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._finished: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def dropped(self) -> int:
        return self._queue.dropped if self._queue is not None else 0

    async def start(self, producer: Producer) -> None:
        """Start a fresh queue and thread; return once the producer is ready."""
        if self.running:
            raise SourceError(f"the {self.name} source is already running")
        loop = asyncio.get_running_loop()
        queue = UnitQueue(
            loop, maxsize=self._maxsize, on_overflow=self._on_overflow, name=self.name
        )
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        finished = asyncio.Event()
        self._queue, self._stop, self._finished = queue, threading.Event(), finished
        self._thread = threading.Thread(
            target=self._run,
            args=(producer, ready, self._stop, queue, loop, finished),
            name=f"source-{self.name}",
            daemon=True,
        )
        self._thread.start()
        try:
            async with asyncio.timeout(self.start_timeout):
                await asyncio.wrap_future(ready)
        except TimeoutError:
            await self.stop()
            raise SourceError(
                f"the {self.name} source did not start within {self.start_timeout:.0f} s"
            ) from None
        except BaseException:
            await self.stop()
            raise

    def push(self, unit: AccessUnit) -> None:
        """Hand over one unit; from any thread, never blocks (dropped if not running)."""
        queue = self._queue
        if queue is not None:
            queue.push(unit)

    def fail(self, error: SourceError) -> None:
        """End the stream; the consumer's next `get()` raises `error`. From any thread."""
        queue = self._queue
        if queue is not None:
            queue.close(error)

    async def get(self) -> AccessUnit:
        """The next unit; raises SourceError once the stream ended or was stopped."""
        if self._queue is None:
            raise SourceError(f"the {self.name} source was not started")
        return await self._queue.get()

    def request_stop(self) -> None:
        """Close the queue and set the producer's stop event, without waiting; any thread."""
        if self._queue is not None:
            self._queue.close()
        self._stop.set()

    async def stop(self) -> None:
        """Idempotent: stop the producer and wait for its thread, at most `stop_timeout` s."""
        self.request_stop()
        thread, finished = self._thread, self._finished
        if thread is None or finished is None:
            return
        try:
            async with asyncio.timeout(self.stop_timeout):
                await finished.wait()
        except TimeoutError:
            log.warning(
                "thread=%s did not stop within %.1f s; abandoning it",
                thread.name, self.stop_timeout,
            )  # fmt: skip
            return
        thread.join(timeout=1.0)  # past its last statement: returns at once

    def _run(
        self,
        producer: Producer,
        ready: concurrent.futures.Future[None],
        stop: threading.Event,
        queue: UnitQueue,
        loop: asyncio.AbstractEventLoop,
        finished: asyncio.Event,
    ) -> None:
        """The thread (of one start: its own queue and events)."""
        try:
            if ready.set_running_or_notify_cancel():  # False: start() was cancelled already
                self._produce(producer, ready, stop, queue)
        finally:
            with contextlib.suppress(RuntimeError):  # a closed loop awaits nobody
                loop.call_soon_threadsafe(finished.set)

    def _produce(
        self,
        producer: Producer,
        ready: concurrent.futures.Future[None],
        stop: threading.Event,
        queue: UnitQueue,
    ) -> None:
        """Run the producer; its outcome goes to `ready` (before it was ready) or the queue."""

        def signal_ready() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            producer(stop, signal_ready)
        except Exception as exc:  # the one place this thread's failures end up
            if not ready.done():
                ready.set_exception(self._start_error(exc))
                return
            log.exception("source=%s failed", self.name)
            queue.close(SourceError(f"the {self.name} source failed: {exc}"))
            return
        if not ready.done():
            ready.set_exception(SourceError(f"the {self.name} source ended before it was ready"))
        queue.close(SourceError(f"the {self.name} source ended"))  # no-op once stopped

    def _start_error(self, exc: Exception) -> SourceError:
        if isinstance(exc, SourceError):
            return exc
        log.exception("source=%s cannot start", self.name)
        return SourceError(f"the {self.name} source cannot start: {exc}")


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
