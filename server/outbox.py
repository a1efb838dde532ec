"""Ordered delivery of socket.io messages for the slot service.

The service queues messages synchronously while it changes state; one task sends them in
that order. Sending never blocks the service, and a receiver never sees `remove_feed`
overtake the `new_feed` it belongs to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

log = logging.getLogger(__name__)


class SocketOutbox:
    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()

    def broadcast(self, event: str, data: Any = None) -> None:
        self._queue.put_nowait(lambda: self._sio.emit(event, data))

    def send(self, sid: str, event: str, data: Any) -> None:
        self._queue.put_nowait(lambda: self._sio.emit(event, data, to=sid))

    def disconnect(self, sid: str) -> None:
        self._queue.put_nowait(lambda: self._sio.disconnect(sid))

    async def run(self) -> None:
        """Send queued messages until cancelled."""
        while True:
            operation = await self._queue.get()
            try:
                await operation()
            except Exception:
                log.exception("socket.io delivery failed")
            finally:
                self._queue.task_done()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has been handed to socket.io."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            log.warning("socket.io outbox not drained after %.1fs", timeout)
