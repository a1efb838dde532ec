"""Ordered delivery of socket.io messages for the slot service.

The service queues messages synchronously while it changes state; one task sends them in
that order. Sending never blocks the service, and a receiver never sees `remove_feed`
overtake the `new_feed` it belongs to.

A broadcast is encoded once and handed to each client's Engine.IO socket in turn, which
only appends it to that socket's send queue. (`AsyncServer.emit` does the same through one
asyncio task per recipient: at thousands of receivers those tasks cost more than the
sending, and what they allocate brings on more of the long full garbage collections.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from engineio import packet as eio_packet
from engineio.exceptions import SocketIsClosedError
from socketio import packet as sio_packet

log = logging.getLogger(__name__)


class SocketOutbox:
    def __init__(self, sio: socketio.AsyncServer) -> None:
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
        message = eio_packet.Packet(eio_packet.MESSAGE, text)
        engineio_server = self._sio.eio
        recipients = [eio_sid for _, eio_sid in self._sio.manager.get_participants("/", None)]
        for eio_sid in recipients:
            try:  # one recipient's trouble never keeps the message from the others
                await engineio_server.send_packet(eio_sid, message)
            except SocketIsClosedError:
                pass  # closing right now: its disconnect is on the way
            except Exception:
                log.exception("socket.io broadcast failed event=%s eio_sid=%s", event, eio_sid)

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
