"""Thousands of socket.io clients in one process, light enough to measure a server with.

A client is one `asyncio.Protocol` on one TCP connection. It speaks just enough
WebSocket (RFC 6455), Engine.IO v4 and socket.io v5 to join the default namespace, answer
the server's pings, note when each event arrives and (for the sender) emit an event with an
acknowledgement. No task, no aiohttp session, no python-socketio client per connection, so
the load generator's own work hardly shows in the figures.

It connects as Chromium does: the same request headers (a server keeps them per client),
its page's origin, and the handshake offers `permessage-deflate;
client_max_window_bits` (RFC 7692). When the server accepts, compressed messages (RSV1
set) are inflated with one raw-deflate context per connection (a fresh one per message if
the server said `server_no_context_takeover`); what the client sends stays uncompressed,
which the extension allows. A server that compresses pays for it per receiver, as it would
with browsers.

Arrival times (events, acks) are `time.monotonic()` (CLOCK_MONOTONIC, the same clock in
every process) taken when the bytes reach the protocol, before they are decoded. A
python-socketio client would see an ack only after several task hops, each queued behind
the receivers' traffic in this loop: at 3000 receivers that shifts it by tens of ms.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
import zlib
from collections.abc import Iterator
from typing import Any, Protocol, cast

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RSV1 = 0x40  # set on the first frame of a compressed message (RFC 7692 §6)
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"  # what Chromium sends
CHROMIUM_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # the empty block the sender stripped (RFC 7692 §7.2.1)


class ClientError(Exception):
    """A client could not connect, or the server broke the protocol."""


class EventSink(Protocol):
    """Told of every socket.io event a receiver gets (`data`: the first argument or None)."""

    def record(self, receiver: int, event: str, data: Any, at: float) -> None: ...


class Arrivals:
    """When each receiver got the one event currently being measured."""

    def __init__(self) -> None:
        self._event = ""
        self._expected = 0
        self._times: dict[int, float] = {}
        self._complete = asyncio.Event()

    def expect(self, event: str, count: int) -> None:
        """Start a measurement: wait for `event` at `count` distinct receivers."""
        self._event, self._expected = event, count
        self._times = {}
        self._complete.clear()

    def record(self, receiver: int, event: str, data: Any, at: float) -> None:
        if event != self._event or receiver in self._times:
            return
        self._times[receiver] = at
        if len(self._times) >= self._expected:
            self._complete.set()

    async def wait(self, timeout: float) -> list[float]:
        """The arrival times, once every expected receiver has the event."""
        try:
            async with asyncio.timeout(timeout):
                await self._complete.wait()
        except TimeoutError:
            got = len(self._times)
            raise ClientError(
                f"{self._event}: {got} of {self._expected} receivers after {timeout:.0f} s"
            ) from None
        return sorted(self._times.values())


class Inflater:
    """Decompresses the messages of one connection (permessage-deflate, RFC 7692)."""

    def __init__(self, no_context_takeover: bool) -> None:
        self.no_context_takeover = no_context_takeover
        self._context = zlib.decompressobj(-zlib.MAX_WBITS)

    def inflate(self, message: bytes) -> bytes:
        if self.no_context_takeover:  # the server starts each message with an empty window
            self._context = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            return self._context.decompress(message + DEFLATE_TAIL)
        except zlib.error as error:
            raise ClientError(f"cannot inflate a message: {error}") from None


def accepted_deflate(answer: str) -> Inflater | None:
    """An inflater if the server's `Sec-WebSocket-Extensions` accepts permessage-deflate.

    Raises ClientError for an extension we did not offer (RFC 6455 §9.1).
    """
    inflater = None
    for extension in filter(None, (part.strip() for part in answer.split(","))):
        name, *params = (word.strip().lower() for word in extension.split(";"))
        if name != "permessage-deflate" or inflater is not None:
            raise ClientError(f"server answered an extension not offered: {extension!r}")
        names = {param.split("=", 1)[0].strip() for param in params}
        # server_max_window_bits only shrinks the window: a 15-bit inflater reads any.
        inflater = Inflater(no_context_takeover="server_no_context_takeover" in names)
    return inflater


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client-to-server frame (clients must mask, RFC 6455 §5.3)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    key = os.urandom(4)
    repeated = (key * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")
    return header + key + body


class LightClient(asyncio.Protocol):
    """One socket.io client on the websocket transport.

    Events it gets are reported to `arrivals` (None: not counted, e.g. the sender's).
    """

    def __init__(self, index: int, host: str, path: str, arrivals: EventSink | None) -> None:
        self.index = index
        self._host = host
        self._path = path.rstrip("/") + "/?EIO=4&transport=websocket"
        self._arrivals = arrivals
        self._key = base64.b64encode(os.urandom(16))
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._message_opcode = OP_TEXT
        self._message_compressed = False
        self._upgraded = False
        self.inflater: Inflater | None = None  # set when the server accepts permessage-deflate
        self._loop = asyncio.get_running_loop()
        self._acks: dict[int, asyncio.Future[tuple[Any, float]]] = {}
        self._next_ack = 0
        self.joined: asyncio.Future[str] = self._loop.create_future()

    # --------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # what create_connection gives
        request = (  # the headers Chromium sends, in its order: servers keep them per client
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nConnection: Upgrade\r\n"
            f"Pragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: {CHROMIUM_AGENT}\r\n"
            f"Upgrade: websocket\r\nOrigin: http://{self._host}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
            f"Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: {self._key.decode()}\r\n"
            f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n\r\n"
        )
        self._transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        self._buffer += data
        try:
            if not self._upgraded and not self._take_handshake():
                return
            for opcode, payload in self._take_frames():
                self._on_frame(opcode, payload, at)
        except ClientError as error:
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ClientError(f"client {self.index}: connection lost ({exc})"))
        self._transport = None

    # ------------------------------------------------------------- websocket

    def _take_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        if not head[0].startswith("HTTP/1.1 101"):
            raise ClientError(f"client {self.index}: upgrade refused: {head[0]}")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        accept = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest()).decode().lower()
        if headers.get("sec-websocket-accept") != accept:
            raise ClientError(f"client {self.index}: bad Sec-WebSocket-Accept")
        self.inflater = accepted_deflate(headers.get("sec-websocket-extensions", ""))
        self._upgraded = True
        return True

    def _take_frames(self) -> Iterator[tuple[int, bytes]]:
        """Complete messages in the buffer (fragments joined, control frames as they come)."""
        buffer = self._buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            if second & 0x80:
                raise ClientError(f"client {self.index}: masked frame from the server")
            size, start = second & 0x7F, 2
            if size >= 126:
                start = 4 if size == 126 else 10
                if len(buffer) < start:
                    return
                size = int.from_bytes(buffer[2:start], "big")
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            opcode, final = first & 0x0F, bool(first & 0x80)
            if first & 0x30 or (opcode >= OP_CLOSE and first & RSV1):
                raise ClientError(f"client {self.index}: reserved bits set in a frame")
            if opcode >= OP_CLOSE:
                yield opcode, payload
                continue
            self._fragments.append(payload)
            if opcode != OP_CONTINUATION:
                self._message_opcode = opcode
                self._message_compressed = bool(first & RSV1)
            if final:
                message, self._fragments = b"".join(self._fragments), []
                yield self._message_opcode, self._decompressed(message)

    def _decompressed(self, message: bytes) -> bytes:
        if not self._message_compressed:
            return message
        if self.inflater is None:
            raise ClientError(f"client {self.index}: compressed message without permessage-deflate")
        return self.inflater.inflate(message)

    def _on_frame(self, opcode: int, payload: bytes, at: float) -> None:
        if opcode == OP_TEXT:
            self._on_packet(payload.decode(), at)
        elif opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close(payload[:2])  # answer with the server's status code
        elif opcode == OP_BINARY:
            raise ClientError(f"client {self.index}: unexpected binary message")

    def _write(self, opcode: int, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_masked_frame(opcode, payload))

    # ------------------------------------------------- Engine.IO / socket.io

    def _on_packet(self, packet: str, at: float) -> None:
        kind, body = packet[:1], packet[1:]
        if kind == "4":  # Engine.IO message carrying a socket.io packet
            self._on_socketio(body, at)
        elif kind == "2":  # ping: the server closes a socket that does not answer
            self._write(OP_TEXT, b"3" + body.encode())
        elif kind == "0":  # open: join the default namespace
            self._write(OP_TEXT, b"40")
        elif kind == "1":
            self.close()

    def _on_socketio(self, body: str, at: float) -> None:
        kind, rest = body[:1], body[1:]
        if kind == "2":  # EVENT, default namespace, no ack id: `["name", data…]`
            if self._arrivals is not None:
                name, *args = json.loads(rest)
                self._arrivals.record(self.index, name, args[0] if args else None, at)
        elif kind == "3":  # ACK: `<id>[data…]`
            number, _, data = rest.partition("[")
            waiter = self._acks.pop(int(number), None)
            if waiter is not None and not waiter.done():
                waiter.set_result((json.loads("[" + data)[0], at))
        elif kind == "0" and not self.joined.done():
            self.joined.set_result(json.loads(rest)["sid"])
        elif kind == "4":
            self._fail(ClientError(f"client {self.index}: connect refused: {rest}"))
        elif kind == "1":
            self._fail(ClientError(f"client {self.index}: disconnected by the server"))

    def _fail(self, error: ClientError) -> None:
        if not self.joined.done():
            self.joined.set_exception(error)
        for waiter in self._acks.values():
            if not waiter.done():
                waiter.set_exception(error)
        self._acks.clear()

    def emit(self, event: str, data: Any) -> asyncio.Future[tuple[Any, float]]:
        """Send `event` with an ack id; the future gives (ack payload, arrival time)."""
        number, self._next_ack = self._next_ack, self._next_ack + 1
        waiter: asyncio.Future[tuple[Any, float]] = self._loop.create_future()
        self._acks[number] = waiter
        self._write(OP_TEXT, f"42{number}{json.dumps([event, data])}".encode())
        return waiter

    def leave(self) -> None:
        """Leave the namespace (socket.io DISCONNECT), then close the connection."""
        self._write(OP_TEXT, b"41")
        self.close()

    def close(self, status: bytes = (1000).to_bytes(2, "big")) -> None:
        """Send a websocket close frame and close the connection; idempotent."""
        if self._transport is not None and not self._transport.is_closing():
            self._write(OP_CLOSE, status)
            self._transport.close()


async def call_ok(client: LightClient, event: str, data: Any, timeout: float) -> float:
    """Emit with an ack; when the ack arrived. A refusal (`success` not true) is an error."""
    async with asyncio.timeout(timeout):
        reply, at = await client.emit(event, data)
    if not isinstance(reply, dict) or reply.get("success") is not True:
        raise ClientError(f"{event} refused: {reply!r}")
    return at


async def connect_client(
    host: str, port: int, path: str, index: int, arrivals: EventSink | None
) -> LightClient:
    """Open one connection; returns once it has joined the default namespace."""
    loop = asyncio.get_running_loop()
    host_header = f"{host}:{port}"
    _, client = await loop.create_connection(
        lambda: LightClient(index, host_header, path, arrivals), host, port
    )
    try:
        await client.joined
    except BaseException:
        client.close()
        raise
    return client


class ReceiverPool:
    """`count` receivers of one server; `close()` drops them all."""

    def __init__(self, host: str, port: int, path: str, arrivals: EventSink) -> None:
        self._host, self._port, self._path = host, port, path
        self._arrivals = arrivals
        self.receivers: list[LightClient] = []

    async def connect(self, count: int, concurrency: int, timeout: float) -> None:
        """Connect `count` more receivers, at most `concurrency` handshakes at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            async with gate:
                receiver = await connect_client(
                    self._host, self._port, self._path, index, self._arrivals
                )
                self.receivers.append(receiver)

        first = len(self.receivers)
        try:
            async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
                for i in range(count):
                    group.create_task(one(first + i))
        except TimeoutError:
            joined = len(self.receivers) - first
            message = f"{joined} of {count} receivers joined in {timeout:.0f} s"
            raise ClientError(message) from None
        except ExceptionGroup as failed:
            raise ClientError(f"cannot connect a receiver: {failed.exceptions[0]}") from None

    def deflate(self) -> str:
        """How the server answered the receivers' permessage-deflate offer."""
        inflaters = [r.inflater for r in self.receivers]
        accepted = [i for i in inflaters if i is not None]
        if not accepted:
            return "declined"
        takeover = "no context takeover" if accepted[0].no_context_takeover else "context takeover"
        share = "" if len(accepted) == len(inflaters) else f" ({len(accepted)}/{len(inflaters)})"
        return f"accepted, {takeover}{share}"

    def close(self) -> None:
        for receiver in self.receivers:
            with contextlib.suppress(Exception):
                receiver.close()
        self.receivers.clear()
