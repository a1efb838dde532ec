"""socket.io's Engine.IO layer, tuned for thousands of receivers and for shutdowns that cannot hang.

python-engineio's aiohttp driver gives every websocket client a send queue and a writer
task that wakes for each message, and accepts aiohttp's default `compress=True`, so every
browser (they all offer permessage-deflate) gets a zlib compressor of ~125 KB and every
broadcast is compressed once per receiver. `EngineServer` is engineio's server with:

- our websocket driver, `server.websocket.WebSocketLink`: no task per client, compression
  only where configured, a broadcast written as one pre-encoded frame per receiver
  (`EngineServer.broadcast`);
- each client's ping as a timer, not a task asleep per client;
- `disconnect` that never waits for a client to fetch its CLOSE packet: engineio's own
  waits forever for an abandoned polling session, which hung shutdown and left polling
  requests with a bad packet or an oversized body unanswered; `close_all` for shutdown.

It relies on engineio's driver table (`_async["websocket"]`), its sockets' queue factory
(`create_queue`) and ping coroutine (`AsyncSocket._send_ping`); tests/unit/test_engine.py
fails loudly if engineio changes them (pyproject.toml caps its version).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable
from typing import Any

import engineio
import socketio
from engineio import async_socket
from engineio import packet as eio_packet

from cvh_camera.server.websocket import SocketQueue, WebSocketLink, packet_frame

_SEND_PING = async_socket.AsyncSocket._send_ping


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """engineio's server with our websocket driver, direct broadcasts and non-blocking closes."""

    def __init__(self, *args: Any, websocket_compression: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._links: set[WebSocketLink] = set()
        driver = functools.partial(WebSocketLink, compress=websocket_compression, links=self._links)
        table: dict[str, Any] = dict(self._async)  # type: ignore[has-type]  # engineio shares it
        table["websocket"] = driver
        self._async = table

    def create_queue(self, *args: Any, **kwargs: Any) -> SocketQueue:
        return SocketQueue()

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        """engineio's per-client ping (`AsyncSocket._send_ping`: sleep, then PING) as a
        timer rather than a task asleep per client; anything else as engineio does it."""
        if getattr(target, "__func__", None) is _SEND_PING and not args and not kwargs:
            loop = asyncio.get_running_loop()
            return loop.call_later(self.ping_interval, _ping, target.__self__)
        return super().start_background_task(target, *args, **kwargs)

    def broadcast(self, eio_sids: Iterable[str], text: str) -> None:
        """Send one Engine.IO MESSAGE to each of `eio_sids`, encoded once, in order."""
        message = eio_packet.Packet(eio_packet.MESSAGE, text)
        frame = packet_frame(message)
        sockets = self.sockets
        for eio_sid in eio_sids:
            socket = sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            sink = socket.queue.sink
            if sink is not None:
                sink.write_frame(frame)
            else:  # long polling, upgrading, or compressing
                socket.queue.put_nowait(message)

    async def disconnect(self, sid: str | None = None) -> None:
        """Close one session (or all): CLOSE is queued for the client, never waited for."""
        targets = list(self.sockets) if sid is None else [sid]
        for target in targets:
            socket = self.sockets.pop(target, None)
            if socket is not None:
                await socket.close(wait=False, reason=self.reason.SERVER_DISCONNECT)

    async def close_all(self, timeout: float) -> None:
        """Disconnect everyone; abort the websockets still open after `timeout` seconds."""
        links = list(self._links)
        await self.disconnect()
        if links:
            await asyncio.wait([link.closed for link in links], timeout=timeout)
        for link in links:
            if not link.closed.done():
                link.abort()
        await self.shutdown()


class SlotSocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server on our `EngineServer`; its public behaviour is unchanged."""

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer


def _ping(socket: Any) -> None:
    """What `AsyncSocket._send_ping` does after its sleep (`send` minus its log line)."""
    if not socket.closing and not socket.closed:
        socket.last_ping = time.time()
        socket.queue.put_nowait(eio_packet.Packet(eio_packet.PING))
