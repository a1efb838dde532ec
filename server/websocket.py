"""One socket.io client's websocket, served without a task or a timer of its own.

`WebSocketLink` is the websocket driver python-engineio calls for each client
(`server.engine` installs it). Without compression, once the websocket is up, the client's
send queue (`SocketQueue`) writes each packet straight into the TCP transport as it is put:
no writer task, and a broadcast is one pre-encoded frame written to each receiver
(`websocket_frame`), in the same order as everything else sent to that client. With
compression (a client offered it and `socketio.compression` allows it) a writer task sends
through aiohttp, which compresses; order holds there too, every packet going through the
queue. A client that does not read (cut network) is dropped once `MAX_BUFFERED` bytes wait
for it.

It relies on engineio's socket attributes (`connected`, `upgrading`, `upgraded`, `queue`,
`receive`, `close`, `sid`, `closed`); tests/unit/test_engine.py fails loudly if engineio
changes them (pyproject.toml caps its version).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import struct
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet

if TYPE_CHECKING:
    from cvh_camera.server.engine import EngineServer

log = logging.getLogger(__name__)

MAX_BUFFERED = 1 << 20  # bytes waiting for one client before it counts as gone
CLOSE_TIMEOUT = 1.0  # seconds to wait for a client's websocket close frame
POLL_BATCH = 16  # packets per long-poll response (python-engineio's client takes no more)
_OP_TEXT, _OP_BINARY = 0x1, 0x2
_PROBE, _PROBE_ANSWER, _UPGRADE = "2probe", "3probe", "5"


def websocket_frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """One unmasked, final websocket frame (RFC 6455 §5.2), as a server sends it."""
    first = 0x80 | opcode
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", first, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def packet_frame(pkt: eio_packet.Packet) -> bytes:
    encoded = pkt.encode()
    if isinstance(encoded, bytes):
        return websocket_frame(encoded, _OP_BINARY)
    return websocket_frame(encoded.encode())


class SocketQueue:
    """An Engine.IO socket's send queue; with a `sink`, a put is written at once.

    It offers what engineio uses of `asyncio.Queue` (put, put_nowait, get, get_nowait,
    task_done, join, empty, qsize) and allocates nothing until a packet must wait: an
    `asyncio.Queue` brings four deques of ~760 bytes each, for every receiver, and a
    websocket receiver here never queues anything.

    A long poll takes at most `POLL_BATCH` packets per response: engineio's `poll()` takes
    one with `get()` and then all there are with `get_nowait()`, and python-engineio's own
    client drops the connection on a payload of more than 16 packets (a burst of controller
    commands did that).
    """

    __slots__ = ("_getters", "_items", "_joiners", "_taken", "_unfinished", "sink")

    def __init__(self) -> None:
        self.sink: WebSocketLink | None = None
        self._items: collections.deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] = []
        self._joiners: list[asyncio.Future[None]] = []
        self._taken = 0  # packets taken since the last get()
        self._unfinished = 0

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        sink = self.sink
        if sink is not None:
            if item is not None:  # None only ever wakes engineio's writer, which we replace
                sink.write_frame(packet_frame(item))
                if item.packet_type == eio_packet.CLOSE:
                    sink.close_soon()
            return
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1
        _wake(self._getters[:1])

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    async def get(self) -> Any:
        self._taken = 0
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            finally:
                self._getters.remove(getter)
                if self._items:
                    _wake(self._getters[:1])  # a cancelled getter passes its turn on
        return self.get_nowait()

    def get_nowait(self) -> Any:
        if not self._items or self._taken >= POLL_BATCH:
            raise asyncio.QueueEmpty  # nothing, or the end of this poll's batch
        self._taken += 1
        return self._items.popleft()

    def task_done(self) -> None:
        self._unfinished = max(0, self._unfinished - 1)
        if self._unfinished == 0:
            _wake(self._joiners)

    async def join(self) -> None:
        if self._unfinished:
            joiner = asyncio.get_running_loop().create_future()
            self._joiners.append(joiner)
            try:
                await joiner
            finally:
                self._joiners.remove(joiner)

    def write_through(self, sink: WebSocketLink) -> None:
        """From now on write through `sink`; what is queued already goes first, in order."""
        items, self._items = self._items or (), None
        self._unfinished = 0
        _wake(self._joiners)
        for item in items:
            if item is not None:
                sink.write_frame(packet_frame(item))
        self.sink = sink


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


class ServedWebSocket(web.WebSocketResponse):
    """A websocket whose client is served from `write_eof`.

    aiohttp awaits `write_eof` once the request handler has returned, in the same task. So
    the handler (engineio's `handle_request`, its connect and upgrade coroutines, ours)
    returns as soon as the websocket is up, and what waits per client is one frame of
    ours under aiohttp's own: at thousands of clients, each frame fewer is memory
    (bench/RESULTS.md, fan-out).
    """

    link: WebSocketLink | None = None

    async def write_eof(self) -> None:  # type: ignore[override]
        link, self.link = self.link, None
        if link is not None:
            await link.serve(self)
        await super().write_eof()


class WebSocketLink:
    """One client's websocket: the upgrade, the reads, and writes without a task of their own.

    engineio constructs it as `driver(socket._websocket_handler, server)` and awaits it
    with the request's environ; the bound handler tells which socket it is for.
    """

    __slots__ = ("_compress", "_links", "_server", "_socket", "_transport", "closed")

    def __init__(
        self,
        handler: Any,
        server: EngineServer,
        *,
        compress: bool,
        links: set[WebSocketLink],
    ) -> None:
        self._socket = handler.__self__
        self._server = server
        self._compress = compress
        self._links = links
        self._transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        """Open the websocket (and finish an upgrade); `serve` then runs from aiohttp."""
        request: web.Request = environ["aiohttp.request"]
        ws = ServedWebSocket(
            max_msg_size=self._server.max_http_buffer_size,
            compress=self._compress,
            timeout=CLOSE_TIMEOUT,
        )
        await ws.prepare(request)
        self._transport = request.transport
        self._links.add(self)
        started = False
        try:
            started = await self._begin(ws)
        finally:
            if started:
                ws.link = self
            else:
                self._ended()
        return ws

    async def serve(self, ws: web.WebSocketResponse) -> None:
        """Read until the client or the server ends the connection.

        No timeout per read: a client that goes quiet misses its pongs, engineio's service
        task closes its socket, and the CLOSE packet arms `close_soon`.
        """
        writer = None
        try:
            writer = self._start_writing(ws)
            while True:
                message = await ws.receive()
                if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                if not await self._take(message.data):
                    break
        finally:
            await self._finish(ws, writer)
            self._ended()

    def _ended(self) -> None:
        self._links.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def write_frame(self, frame: bytes) -> None:
        """Write one websocket frame now; drop the client if too much waits for it."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_BUFFERED:
            log.warning("socket.io client not reading: dropped eio_sid=%s", self._socket.sid)
            transport.abort()
            return
        transport.write(frame)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close_soon(self) -> None:
        """A CLOSE packet went out: a client that does not close by itself is cut."""
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    async def _begin(self, ws: web.WebSocketResponse) -> bool:
        """Up as a websocket: upgraded from long polling, or connected as one."""
        socket = self._socket
        if socket.connected:
            return await self._upgrade(ws)
        socket.connected = socket.upgraded = True
        return True

    def _start_writing(self, ws: web.WebSocketResponse) -> asyncio.Task[None] | None:
        """Writes straight through from now on; with compression, a writer task of aiohttp's."""
        if ws.compress:
            return asyncio.create_task(self._write_queued(ws), name="socket.io writer")
        self._socket.queue.write_through(self)
        return None

    async def _finish(self, ws: web.WebSocketResponse, writer: asyncio.Task[None] | None) -> None:
        socket = self._socket
        socket.queue.sink = None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await socket.close(wait=False, abort=True, reason=self._server.reason.TRANSPORT_CLOSE)
        if self._server.sockets.get(socket.sid) is socket:  # engineio's request has returned
            del self._server.sockets[socket.sid]
        await ws.close()

    async def _upgrade(self, ws: web.WebSocketResponse) -> bool:
        """Engine.IO's upgrade from long polling: probe, answer, end the poll, UPGRADE."""
        socket = self._socket
        socket.upgrading = True  # sends wait in the queue meanwhile
        try:
            if await self._receive(ws) != _PROBE:
                return False
            await ws.send_str(_PROBE_ANSWER)
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))  # the poll returns
            if await self._receive(ws) != _UPGRADE:
                return False
            socket.upgraded = True
            return True
        finally:
            socket.upgrading = False

    async def _receive(self, ws: web.WebSocketResponse) -> str | bytes | None:
        """The next upgrade message, or None when the client closed, broke or went quiet."""
        server = self._server
        try:
            async with asyncio.timeout(server.ping_interval + server.ping_timeout):
                message = await ws.receive()
        except TimeoutError:
            return None
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        data: str | bytes = message.data
        return data

    async def _take(self, data: str | bytes) -> bool:
        """Hand one received packet to engineio; False once the socket is closed."""
        socket = self._socket
        try:
            await socket.receive(eio_packet.Packet(encoded_packet=data))
        except eio_exceptions.SocketIsClosedError:
            return False
        except eio_exceptions.UnknownPacketError:
            log.info("socket.io client sent an unknown packet eio_sid=%s", socket.sid)
        except Exception as error:  # a malformed packet: keep the connection
            log.info("socket.io packet refused eio_sid=%s error=%r", socket.sid, error)
        return not socket.closed  # the client said CLOSE

    async def _write_queued(self, ws: web.WebSocketResponse) -> None:
        """With compression: aiohttp compresses, so sends go through it one by one."""
        queue = self._socket.queue
        while True:
            pkt = await queue.get()
            queue.task_done()
            if pkt is None:
                continue
            encoded = pkt.encode()
            if isinstance(encoded, bytes):
                await ws.send_bytes(encoded)
            else:
                await ws.send_str(encoded)
            if pkt.packet_type == eio_packet.CLOSE:
                self.close_soon()
