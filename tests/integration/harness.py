"""Building blocks for integration tests: the real server app on a free port, real socket.io
clients that record what they receive, and polling helpers with timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import socketio
from aiohttp import web

from cvh_camera.janus_local import LocalJanus, find_free_port
from cvh_camera.server.app import ROOM, SERVICE, SHUTDOWN_GRACE, create_app
from cvh_camera.server.config import JanusSettings, ServerConfig
from cvh_camera.server.service import SlotService

TIMEOUT = 10.0


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll a condition that has no event to wait for (files, other processes)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def server_config(janus: LocalJanus, tmp_path: Path, **overrides: Any) -> ServerConfig:
    settings = JanusSettings(
        url=janus.http_url,
        room=overrides.pop("room", 1000),
        pin=overrides.pop("janus_pin", ""),
        admin_key=janus.admin_key,
    )
    base = ServerConfig(
        host="127.0.0.1",
        port=find_free_port(),
        notify_path=str(tmp_path / "notify.txt"),
        read_stdin=False,
        janus=settings,
    )
    return replace(base, **overrides)


@dataclass
class RunningServer:
    config: ServerConfig
    app: web.Application
    controller_fd: int
    notify_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    @property
    def service(self) -> SlotService:
        return self.app[SERVICE]

    def command(self, line: str) -> None:
        """Write one line to the server's controller input, as PULT does on stdin."""
        os.write(self.controller_fd, line.encode() + b"\n")

    def notify_lines(self) -> list[str]:
        try:
            return self.notify_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    async def wait_notify(self, line: str) -> None:
        await wait_until(lambda: line in self.notify_lines())


@contextlib.asynccontextmanager
async def run_server(
    config: ServerConfig, *, wait_janus: bool = True
) -> AsyncIterator[RunningServer]:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, "rb", buffering=0)
    app = create_app(config, controller_stream=stream)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    try:
        if wait_janus:
            await app[ROOM].wait_ready(TIMEOUT)
        yield RunningServer(config, app, write_fd, Path(config.notify_path))
    finally:
        os.close(write_fd)
        await runner.cleanup()
        stream.close()


class Client:
    """A real python-socketio client; every event it receives is queued by name."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self._queues: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.disconnected = asyncio.Event()
        self.sio.on("*", self._record)
        self.sio.on("disconnect", self._gone)

    async def _record(self, event: str, *args: Any) -> None:
        self._queues[event].put_nowait(args[0] if args else None)

    async def _gone(self, *args: Any) -> None:
        self.disconnected.set()

    async def connect(self, url: str, path: str = "/socket.io") -> Client:
        await self.sio.connect(
            url, socketio_path=path, transports=["websocket"], wait_timeout=TIMEOUT
        )
        return self

    async def call(self, event: str, *args: Any) -> Any:
        return (
            await self.sio.call(event, args[0] if args else None, timeout=TIMEOUT)
            if args
            else (await self.sio.call(event, timeout=TIMEOUT))
        )

    async def next(self, event: str, timeout: float = TIMEOUT) -> Any:
        return await asyncio.wait_for(self._queues[event].get(), timeout)

    def pending(self, event: str) -> int:
        return self._queues[event].qsize()

    async def close(self) -> None:
        await self.sio.disconnect()


@contextlib.asynccontextmanager
async def clients(
    url: str, count: int = 1, path: str = "/socket.io"
) -> AsyncIterator[list[Client]]:
    made = [await Client().connect(url, path) for _ in range(count)]
    try:
        yield made
    finally:
        for client in made:
            await client.close()
