"""Thousands of socket.io receivers in one process, light enough to measure a server with.

A receiver is one `asyncio.Protocol` on one TCP connection. It speaks just enough
WebSocket (RFC 6455, no extensions), Engine.IO v4 and socket.io v5 to join the default
namespace, answer the server's pings and note when each event arrives: no task, no
aiohttp session, no python-socketio client per receiver, so the load generator's own
work hardly shows in the figures.

An event's arrival time is `time.monotonic()` (CLOCK_MONOTONIC, the same clock in every
process) taken when its bytes reach the protocol, before they are decoded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import cast

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ReceiverError(Exception):
    """A receiver could not connect, or the server broke the protocol."""


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

    def record(self, receiver: int, event: str, at: float) -> None:
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
            raise ReceiverError(
                f"{self._event}: {got} of {self._expected} receivers after {timeout:.0f} s"
            ) from None
        return sorted(self._times.values())


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


class Receiver(asyncio.Protocol):
    """One socket.io client on the websocket transport that only listens."""

    def __init__(self, index: int, host: str, path: str, arrivals: Arrivals) -> None:
        self.index = index
        self._host = host
        self._path = path.rstrip("/") + "/?EIO=4&transport=websocket"
        self._arrivals = arrivals
        self._key = base64.b64encode(os.urandom(16))
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._message_opcode = OP_TEXT
        self._upgraded = False
        self.joined: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # --------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # what create_connection gives
        request = (
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
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
        except ReceiverError as error:
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ReceiverError(f"receiver {self.index}: connection lost ({exc})"))
        self._transport = None

    # ------------------------------------------------------------- websocket

    def _take_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        if not head[0].startswith("HTTP/1.1 101"):
            raise ReceiverError(f"receiver {self.index}: upgrade refused: {head[0]}")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        accept = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest()).decode().lower()
        if headers.get("sec-websocket-accept") != accept:
            raise ReceiverError(f"receiver {self.index}: bad Sec-WebSocket-Accept")
        self._upgraded = True
        return True

    def _take_frames(self) -> Iterator[tuple[int, bytes]]:
        """Complete messages in the buffer (fragments joined, control frames as they come)."""
        buffer = self._buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            if second & 0x80:
                raise ReceiverError(f"receiver {self.index}: masked frame from the server")
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
            if opcode >= OP_CLOSE:
                yield opcode, payload
                continue
            self._fragments.append(payload)
            if opcode != OP_CONTINUATION:
                self._message_opcode = opcode
            if final:
                message, self._fragments = b"".join(self._fragments), []
                yield self._message_opcode, message

    def _on_frame(self, opcode: int, payload: bytes, at: float) -> None:
        if opcode == OP_TEXT:
            self._on_packet(payload.decode(), at)
        elif opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self._write(OP_CLOSE, payload[:2])
            self.close()
        elif opcode == OP_BINARY:
            raise ReceiverError(f"receiver {self.index}: unexpected binary message")

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
            event = json.loads(rest)[0]
            self._arrivals.record(self.index, event, at)
        elif kind == "0" and not self.joined.done():
            self.joined.set_result(json.loads(rest)["sid"])
        elif kind == "4":
            self._fail(ReceiverError(f"receiver {self.index}: connect refused: {rest}"))
        elif kind == "1":
            self._fail(ReceiverError(f"receiver {self.index}: disconnected by the server"))

    def _fail(self, error: ReceiverError) -> None:
        if not self.joined.done():
            self.joined.set_exception(error)

    @property
    def has_joined(self) -> bool:
        future = self.joined
        return future.done() and not future.cancelled() and future.exception() is None

    def close(self) -> None:
        """Leave with a websocket close frame; idempotent."""
        if self._transport is not None and not self._transport.is_closing():
            self._write(OP_CLOSE, (1000).to_bytes(2, "big"))
            self._transport.close()


class ReceiverPool:
    """`count` receivers of one server; `close()` drops them all."""

    def __init__(self, host: str, port: int, path: str, arrivals: Arrivals) -> None:
        self._host, self._port, self._path = host, port, path
        self._arrivals = arrivals
        self.receivers: list[Receiver] = []

    async def connect(self, count: int, concurrency: int, timeout: float) -> None:
        """Connect `count` more receivers, at most `concurrency` handshakes at a time."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        host_header = f"{self._host}:{self._port}"

        async def one(index: int) -> None:
            async with gate:
                _, receiver = await loop.create_connection(
                    lambda: Receiver(index, host_header, self._path, self._arrivals),
                    self._host,
                    self._port,
                )
                self.receivers.append(receiver)
                await receiver.joined

        first = len(self.receivers)
        try:
            async with asyncio.timeout(timeout), asyncio.TaskGroup() as group:
                for i in range(count):
                    group.create_task(one(first + i))
        except TimeoutError:
            joined = sum(r.has_joined for r in self.receivers)
            message = f"{joined} of {count} receivers joined in {timeout:.0f} s"
            raise ReceiverError(message) from None
        except ExceptionGroup as failed:
            raise ReceiverError(f"cannot connect a receiver: {failed.exceptions[0]}") from None

    def close(self) -> None:
        for receiver in self.receivers:
            with contextlib.suppress(Exception):
                receiver.close()
        self.receivers.clear()
