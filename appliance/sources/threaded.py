"""The plumbing shared by the sources: one owned thread, the unit queue, counters, requests.

`start()` starts the source's thread and returns once the thread reported that it is ready
(or raises the SourceError it reported, or gives up after `start_timeout`). `stop()` closes
the queue, then stops and joins the thread within `stop_timeout`. A stopped or failed source
can be started again. A subclass supplies `_thread_main`, which runs on the thread.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import threading

from cvh_camera.appliance.sources.base import AccessUnit, SourceBase, SourceError
from cvh_camera.appliance.sources.unit_queue import UnitQueue
from cvh_camera.appliance.sources.worker import WorkerThread

log = logging.getLogger(__name__)

QUEUE_SECONDS = 1.0  # the unit queue holds about this much video before it drops


def queue_size(fps: int) -> int:
    return max(4, round(fps * QUEUE_SECONDS))


class ThreadedSource(SourceBase, abc.ABC):
    start_timeout = 30.0
    stop_timeout = 5.0

    def __init__(self, *, name: str, width: int, height: int, fps: int) -> None:
        super().__init__(name=name, width=width, height=height, fps=fps)
        self._queue: UnitQueue | None = None
        self._worker: WorkerThread | None = None

    async def start(self) -> None:
        if self._worker is not None and self._worker.alive:
            raise SourceError(f"the {self.name} source is already running")
        self._queue = UnitQueue(
            asyncio.get_running_loop(),
            maxsize=queue_size(self.fps),
            on_overflow=self.request_keyframe,
            name=self.name,
        )
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._worker = WorkerThread(f"source-{self.name}", lambda stop: self._main(stop, ready))
        self._worker.start()
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
        log.info("source=%s started %dx%d@%d", self.name, self.width, self.height, self.fps)

    async def stop(self) -> None:
        if self._queue is not None:
            self._queue.close()
        if self._worker is not None:
            self._worker.request_stop()
            self._wake_thread()
            await self._worker.stop(self.stop_timeout)

    async def next_unit(self) -> AccessUnit:
        if self._queue is None:
            raise SourceError(f"the {self.name} source was not started")
        return await self._queue.get()

    def request_keyframe(self) -> None:
        super().request_keyframe()
        self._wake_thread()

    def _dropped(self) -> int:
        return self._queue.dropped if self._queue is not None else 0

    def _main(self, stop: threading.Event, ready: concurrent.futures.Future[None]) -> None:
        if ready.set_running_or_notify_cancel():
            self._thread_main(stop, ready)

    def _push(self, unit: AccessUnit) -> None:
        if self._queue is not None:
            self._queue.push(unit)

    def _fail(self, error: SourceError) -> None:
        """End the stream: the consumer's next_unit() raises `error`."""
        if self._queue is not None:
            self._queue.close(error)

    def _wake_thread(self) -> None:
        """Hook: wake the thread early for a request (it polls otherwise)."""
        return

    @abc.abstractmethod
    def set_bitrate(self, bits_per_second: int) -> None: ...

    @abc.abstractmethod
    def _thread_main(self, stop: threading.Event, ready: concurrent.futures.Future[None]) -> None:
        """The thread: set `ready` (result or SourceError) once running, return once `stop`."""
