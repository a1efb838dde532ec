"""Thousands of socket.io receivers in one process: the load of the fan-out and soak benches.

Why not python-socketio's own client (measured 2026-12-03 on a 2-core AMD EPYC,
python-socketio 5.18.1 on uvloop, our server on one core, the receivers on the other): 3000
`socketio.AsyncClient`s connect in 3.5 s, which is fine, but every broadcast costs them 700
ms of CPU, about 230 µs per receiver and event (a task per websocket read and another per
message), so "new_feed → last receiver" at 3000 reads 610-720 ms: the client's own time,
where the server needs about 40 ms. The soak's 30,000 events a second would need seven such
cores. A receiver here takes about 14 µs per event (41 ms per broadcast to 3000).
Everything else, the senders included, uses python-socketio's client (`bench.clients`).

A receiver is one `asyncio.Protocol` on one TCP connection that speaks just enough
WebSocket (RFC 6455), Engine.IO v4 and socket.io v5 to join the default namespace, answer
pings and note when each event arrives: `time.monotonic()` (CLOCK_MONOTONIC, the same in
every process) when its bytes reach the protocol, before they are decoded. It connects as
Chromium does: its request headers (a server keeps them per client), its page's origin,
and the offer `permessage-deflate; client_max_window_bits` (RFC 7692); compressed messages
are inflated, so a server that compresses pays for it per receiver, as with browsers. It
only receives: a fragmented message (the servers measured never send one) is an error.
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

from bench.rig import HOST, BenchError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
FIN, RSV1, RSV23, MASKED = 0x80, 0x40, 0x30, 0x80
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # the empty block the sender stripped (RFC 7692 §7.2.1)
REQUEST = (  # the headers Chromium sends, in its order
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n"
    "Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\nOrigin: http://{host}\r\n"
    "Sec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
    "Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: {key}\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)


class ClientError(BenchError):
    """A receiver could not connect, or the server broke the protocol."""


class EventSink(Protocol):
    """Told of every socket.io event a receiver gets (`data`: the first argument or None)."""

    def record(self, receiver: int, event: str, data: Any, at: float) -> None: ...


def _frame(opcode: int, payload: bytes) -> bytes:
    """A short client frame (what a receiver sends is under 126 bytes), masked (§5.3)."""
    key = os.urandom(4)
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload[:125]))
    return bytes((FIN | opcode, MASKED | len(masked))) + key + masked


class Receiver(asyncio.Protocol):
    def __init__(self, index: int, host: str, sink: EventSink) -> None:
        self.index, self._host, self._sink = index, host, sink
        self._key = base64.b64encode(os.urandom(16)).decode()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self.deflate: str = "declined"  # how the server answered permessage-deflate
        self._inflater: Any = None  # a zlib decompressor, if the server compresses
        self._fresh_context = False  # server_no_context_takeover: a new one per message
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # what create_connection gives
        self._transport.write(REQUEST.format(host=self._host, key=self._key).encode())

    def data_received(self, data: bytes) -> None:
        at = time.monotonic()
        self._buffer += data
        try:
            if self._upgraded or self._handshake():
                for opcode, payload in self._messages():
                    self._on_message(opcode, payload, at)
        except (ClientError, ValueError, TypeError, zlib.error) as error:
            self._fail(ClientError(f"receiver {self.index}: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(ClientError(f"receiver {self.index}: connection lost ({exc})"))

    def _handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        status, *lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        if not status.startswith("HTTP/1.1 101"):
            raise ClientError(f"upgrade refused: {status}")
        headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
        accept = base64.b64encode(hashlib.sha1(self._key.encode() + GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != accept.lower():
            raise ClientError("bad Sec-WebSocket-Accept")
        extension = headers.get("sec-websocket-extensions", "")
        if extension:
            name, *params = (word.strip() for word in extension.split(";"))
            if name != "permessage-deflate" or "," in extension:
                raise ClientError(f"server answered an extension not offered: {extension!r}")
            self._fresh_context = "server_no_context_takeover" in params
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            takeover = "no context takeover" if self._fresh_context else "context takeover"
            self.deflate = f"accepted, {takeover}"
        self._upgraded = True
        return True

    def _messages(self) -> Iterator[tuple[int, bytes]]:
        """The complete frames in the buffer, inflated."""
        buffer = self._buffer
        while len(buffer) >= 2:
            first, size = buffer[0], buffer[1] & 0x7F
            if buffer[1] & MASKED or not first & FIN or first & RSV23:
                raise ClientError(f"a frame this receiver does not read: {bytes(buffer[:2])!r}")
            start = 2 + {126: 2, 127: 8}.get(size, 0)
            if len(buffer) < start:
                return
            if size >= 126:
                size = int.from_bytes(buffer[2:start], "big")
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if first & RSV1:
                payload = self._inflate(payload)
            yield first & 0x0F, payload

    def _inflate(self, payload: bytes) -> bytes:
        if self._inflater is None:
            raise ClientError("compressed message without permessage-deflate")
        if self._fresh_context:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        data: bytes = self._inflater.decompress(payload + DEFLATE_TAIL)
        return data

    def _on_message(self, opcode: int, payload: bytes, at: float) -> None:
        if opcode == OP_PING:
            self._send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close()
        elif opcode != OP_TEXT:
            raise ClientError(f"unexpected websocket opcode {opcode}")
        elif payload.startswith(b"42"):  # an event of the default namespace: ["name", data…]
            name, *args = json.loads(payload[2:])
            self._sink.record(self.index, name, args[0] if args else None, at)
        elif payload == b"2":  # Engine.IO ping: the server closes a socket that does not answer
            self._send(OP_TEXT, b"3")
        elif payload.startswith(b"0"):  # Engine.IO open: join the default namespace
            self._send(OP_TEXT, b"40")
        elif payload.startswith(b"40"):
            if not self.joined.done():
                self.joined.set_result(None)
        elif payload[:2] in (b"41", b"44") or payload == b"1":
            raise ClientError(f"the server ended the session: {payload[:80]!r}")

    def _send(self, opcode: int, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(_frame(opcode, payload))

    def _fail(self, error: ClientError) -> None:
        if not self.joined.done():
            self.joined.set_exception(error)

    def close(self) -> None:
        """A websocket close (1000), then the connection; idempotent."""
        self._send(OP_CLOSE, (1000).to_bytes(2, "big"))
        if self._transport is not None:
            self._transport.close()


class ReceiverPool:
    """Receivers of one server, every event reported to `sink`; `close()` drops them all."""

    def __init__(self, port: int, sink: EventSink) -> None:
        self._port, self._sink = port, sink
        self.receivers: list[Receiver] = []

    async def connect(self, count: int, concurrency: int, timeout: float) -> None:
        """`count` more receivers, each until joined, at most `concurrency` at a time."""
        loop, gate, first = asyncio.get_running_loop(), asyncio.Semaphore(concurrency), len(self)
        host = f"{HOST}:{self._port}"

        async def one(index: int) -> None:
            async with gate:
                _, receiver = await loop.create_connection(
                    lambda: Receiver(index, host, self._sink), HOST, self._port
                )
                self.receivers.append(receiver)
                await receiver.joined

        try:
            async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
                for index in range(first, first + count):
                    group.create_task(one(index))
        except TimeoutError:
            message = f"{len(self) - first} of {count} receivers in {timeout:.0f} s"
            raise ClientError(message) from None
        except ExceptionGroup as failed:
            raise ClientError(f"cannot connect a receiver: {failed.exceptions[0]}") from None

    def __len__(self) -> int:
        return len(self.receivers)

    def deflate(self) -> str:
        """How the server answered the receivers' permessage-deflate offer."""
        answers = sorted({r.deflate for r in self.receivers})
        return " / ".join(answers) or "no receivers"

    def close(self) -> None:
        for receiver in self.receivers:
            with contextlib.suppress(Exception):
                receiver.close()
        self.receivers.clear()
