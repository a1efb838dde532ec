"""One owned worker thread: started once, stopped through an event, awaited without blocking.

`stop()` sets the thread's stop event and waits for it to end on the event loop (the thread
signals its end with `call_soon_threadsafe`), for at most `timeout` seconds: a thread stuck in
a driver call is logged and abandoned (it is a daemon), never waited for forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class WorkerThread:
    def __init__(self, name: str, target: Callable[[threading.Event], object]) -> None:
        self.name = name
        self._target = target
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finished: asyncio.Event | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread; call from the event loop that will await `stop()`."""
        if self._thread is not None:
            raise RuntimeError(f"thread {self.name} was already started")
        self._loop = asyncio.get_running_loop()
        self._finished = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target(self._stop)
        finally:
            if self._loop is not None and self._finished is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop awaits nobody
                    self._loop.call_soon_threadsafe(self._finished.set)

    def request_stop(self) -> None:
        """Set the stop event (from any thread) without waiting."""
        self._stop.set()

    async def stop(self, timeout: float) -> bool:
        """Ask the thread to stop and wait at most `timeout` s; True if it has ended."""
        self._stop.set()
        if self._thread is None or self._finished is None:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._finished.wait()
        except TimeoutError:
            log.warning("thread=%s did not stop within %.1f s; abandoning it", self.name, timeout)
            return False
        self._thread.join(timeout=1.0)  # past its last statement: returns at once
        return not self._thread.is_alive()
