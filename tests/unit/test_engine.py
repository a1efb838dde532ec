"""server.engine: the websocket frames it writes, and what it relies on in python-engineio.

If engineio changes what `server.engine` relies on, these fail before any client notices
(pyproject.toml caps engineio's and python-socketio's versions; these are the gate for
raising the caps).
"""

from __future__ import annotations

import asyncio
import inspect

from engineio import async_socket, packet
from wsproto.frame_protocol import FrameProtocol, Opcode

from cvh_camera.server.engine import EngineServer, SlotSocketServer
from cvh_camera.server.websocket import POLL_BATCH, SocketQueue, websocket_frame


def _read_back(frame: bytes) -> list[tuple[Opcode, object, bool]]:
    """Decode with wsproto (an independent implementation), as a client would."""
    protocol = FrameProtocol(client=True, extensions=[])
    protocol.receive_bytes(frame)
    return [(f.opcode, f.payload, f.frame_finished) for f in protocol.received_frames()]


def test_frames_of_every_length_class_read_back() -> None:
    for size in (0, 125, 126, 65535, 65536, 200_000):
        text = "x" * size
        assert _read_back(websocket_frame(text.encode())) == [(Opcode.TEXT, text, True)]
    binary = websocket_frame(b"\x00\x01", 0x2)
    assert _read_back(binary) == [(Opcode.BINARY, bytearray(b"\x00\x01"), True)]


def test_engineio_builds_sockets_and_drivers_the_way_we_rely_on() -> None:
    server = EngineServer(async_mode="aiohttp")
    assert isinstance(server.create_queue(), SocketQueue)
    socket = async_socket.AsyncSocket(server, "sid")
    assert isinstance(socket.queue, SocketQueue)  # BaseSocket takes its queue from the server
    for attribute in ("connected", "upgrading", "upgraded", "closed", "closing", "sid"):
        assert hasattr(socket, attribute), attribute
    assert inspect.iscoroutinefunction(socket.receive)
    assert "wait" in inspect.signature(socket.close).parameters
    assert "abort" in inspect.signature(socket.close).parameters
    # engineio hands the websocket driver the socket's bound handler and the server
    source = inspect.getsource(async_socket.AsyncSocket._upgrade_websocket)
    assert "self.server._async['websocket'](" in source
    assert "self._websocket_handler, self.server)" in source
    assert server._async["websocket"].func.__name__ == "WebSocketLink"


def test_socketio_builds_its_engine_from_our_class() -> None:
    sio = SlotSocketServer(async_mode="aiohttp", websocket_compression=True)
    assert isinstance(sio.eio, EngineServer)


def test_a_long_poll_takes_at_most_a_batch() -> None:
    async def scenario() -> list[int]:
        queue = SocketQueue()
        for number in range(POLL_BATCH + 5):
            queue.put_nowait(packet.Packet(packet.MESSAGE, str(number)))
        server = EngineServer(async_mode="aiohttp")
        socket = async_socket.AsyncSocket(server, "sid")
        socket.queue = queue
        first = await socket.poll()
        second = await socket.poll()
        return [len(first), len(second)]

    assert asyncio.run(scenario()) == [POLL_BATCH, 5]


def test_the_ping_is_a_timer_that_queues_a_ping() -> None:
    async def scenario() -> tuple[object, list[str]]:
        server = EngineServer(async_mode="aiohttp", ping_interval=0.01)
        socket = async_socket.AsyncSocket(server, "sid")
        handle = server.start_background_task(socket._send_ping)
        item = await asyncio.wait_for(socket.queue.get(), 5)
        return handle, [item.encode()]

    handle, sent = asyncio.run(scenario())
    assert isinstance(handle, asyncio.TimerHandle)
    assert sent == ["2"]
