"""Ordered delivery of socket.io messages for the slot service.

The service queues messages synchronously while it changes state; one task sends them in
that order. Sending never blocks the service, and a receiver never sees `remove_feed`
overtake the `new_feed` it belongs to.

A broadcast is encoded once, as one websocket frame, and written to each receiver's
connection in turn (`server.engine.EngineServer.broadcast`); long-polling clients get it
in their queue. (`AsyncServer.emit` encodes per recipient and runs one asyncio task for
each: at thousands of receivers those tasks cost more than the sending, and what they
allocate brings on more of the long full garbage collections.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from socketio import packet as sio_packet

from cvh_camera.server.engine import SlotSocketServer

log = logging.getLogger(__name__)


class SocketOutbox:
    def __init__(self, sio: SlotSocketServer) -> None:
        self._sio = sio
        self._queue: asyncio.Queue[Callable[[], Awaitable[Any]]] = asyncio.Queue()

    def broadcast(self, event: str, data: Any = None) -> None:
        self._queue.put_nowait(lambda: self._broadcast(event, data))

    def send(self, sid: str, event: str, data: Any) -> None:
        self._queue.put_nowait(lambda: self._sio.emit(event, data, to=sid))

    def disconnect(self, sid: str) -> None:
        self._queue.put_nowait(lambda: self._sio.disconnect(sid))

    async def _broadcast(self, event: str, data: Any) -> None:
        """`sio.emit(event, data)` to every client of the default namespace."""
        args = [] if data is None else [data]
        encoded = self._sio.packet_class(sio_packet.EVENT, namespace="/", data=[event, *args])
        text = encoded.encode()
        if not isinstance(text, str):  # binary attachments: never in our JSON payloads
            await self._sio.emit(event, data)
            return
        recipients = [eio_sid for _, eio_sid in self._sio.manager.get_participants("/", None)]
        self._sio.eio.broadcast(recipients, text)

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
