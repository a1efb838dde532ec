"""Fan-out to clients that connect like browsers: every event, in order, whatever the transport.

Receivers: aiohttp websockets offering permessage-deflate as Chromium does (speaking
Engine.IO v4 / socket.io v5 by hand), python-socketio clients on websocket, on long polling
and on polling upgraded to websocket, one of them joining in the middle of a burst. The
server runs with websocket compression off (the default) and on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from cvh_camera.janus_local import LocalJanus
from cvh_camera.server.config import PreactivatedSlot
from tests.integration.harness import TIMEOUT, Client, RunningServer, run_server, server_config
from tests.integration.test_server import janus_publisher

BURST = 200


class BrowserLikeReceiver:
    """socket.io over aiohttp's websocket client, which offers permessage-deflate."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.compressed = False
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, url: str) -> BrowserLikeReceiver:
        endpoint = f"{url}/socket.io/?EIO=4&transport=websocket"
        self._ws = await self._http.ws_connect(endpoint, compress=15)
        self.compressed = bool(self._ws.compress)
        opened = await self._ws.receive_str(timeout=TIMEOUT)
        assert opened.startswith("0{"), opened
        await self._ws.send_str("40")
        joined = await self._ws.receive_str(timeout=TIMEOUT)
        assert joined.startswith("40{"), joined
        self._reader = asyncio.create_task(self._read(self._ws))
        return self

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            text = message.data
            if text == "2":
                await ws.send_str("3")
            elif text.startswith("42"):
                event, *args = json.loads(text[2:])
                self.events.put_nowait((event, args[0] if args else None))

    async def next(self) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), TIMEOUT)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class SocketIOReceiver:
    """python-socketio's client on the given transports; events queued in arrival order."""

    def __init__(self, transports: list[str]) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._transports = transports
        self.sio.on("*", self._record)

    async def _record(self, event: str, *args: Any) -> None:
        self.events.put_nowait((event, args[0] if args else None))

    async def connect(self, url: str) -> SocketIOReceiver:
        await self.sio.connect(url, transports=self._transports, wait_timeout=TIMEOUT)
        return self

    async def next(self) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), TIMEOUT)

    async def close(self) -> None:
        await self.sio.disconnect()


Receiver = BrowserLikeReceiver | SocketIOReceiver


@pytest.fixture(params=[False, True], ids=["compression-off", "compression-on"])
async def server(
    request: pytest.FixtureRequest, janus_session_scope: LocalJanus, tmp_path: Path
) -> AsyncIterator[RunningServer]:
    config = server_config(janus_session_scope, tmp_path)
    config = server_config(
        janus_session_scope,
        tmp_path,
        room=config.port,
        websocket_compression=request.param,
        preactivated=(PreactivatedSlot(0, "fan-token"),),
    )
    async with run_server(config) as running:
        yield running


async def expect_burst(receiver: Receiver, first: int = 0) -> int:
    """The geometry commands from `first` on, each exactly once and in order; then remove_feed."""
    expected = first
    while True:
        event, data = await receiver.next()
        if event == "remove_feed":
            assert expected == BURST, f"lost commands {expected}..{BURST - 1}"
            return expected
        assert event == "command", (event, data)
        assert int(data["params"][1]) == expected, f"reordered or lost: {data}"
        expected += 1


async def test_every_receiver_gets_every_event_in_order(
    server: RunningServer, janus_session_scope: LocalJanus, http: aiohttp.ClientSession
) -> None:
    receivers: list[Receiver] = [
        await BrowserLikeReceiver(http).connect(server.url),
        await BrowserLikeReceiver(http).connect(server.url),
        await SocketIOReceiver(["websocket"]).connect(server.url),
        await SocketIOReceiver(["polling"]).connect(server.url),
        await SocketIOReceiver(["polling", "websocket"]).connect(server.url),
    ]
    browser_like = receivers[0]
    assert isinstance(browser_like, BrowserLikeReceiver)
    assert browser_like.compressed is server.config.websocket_compression
    late: SocketIOReceiver | None = None
    session, _, feed_id = await janus_publisher(http, janus_session_scope, server.config.janus.room)
    sender = await Client().connect(server.url)
    try:
        answer = await sender.call("sender_init", {"slot": 0, "token": "fan-token"})
        assert answer["success"], answer
        feed = {"feedId": feed_id, "sessionId": session.id, "videoroomId": 1}
        assert (await sender.call("set_feed_id", feed))["success"]
        for receiver in receivers:
            event, data = await receiver.next()
            assert (event, data["feedId"]) == ("new_feed", feed_id)
        for number in range(BURST):
            server.command(f"set_geometry_relative_to_canvas 0 rb {number} 0 320 240")
            if number == BURST // 4:  # joins (polling, then upgrading) in the middle
                late = await SocketIOReceiver(["polling", "websocket"]).connect(server.url)
        await sender.close()
        for receiver in receivers:
            await expect_burst(receiver)
        assert late is not None
        event, data = await late.next()
        while event == "new_feed":  # query_state is not asked: only broadcasts arrive
            event, data = await late.next()
        assert event == "command"
        first = int(data["params"][1])
        assert await expect_burst(late, first + 1) == BURST
    finally:
        for receiver in [*receivers, *([late] if late else [])]:
            await receiver.close()
        await session.destroy()
