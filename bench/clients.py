"""The real clients of the benchmarks: python-socketio's (senders, feed watchers) and a Janus
publisher without media, as a sender page is before its `set_feed_id`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import socketio

from bench.rig import STEP_TIMEOUT, BenchError, Child
from cvh_camera.janus import JanusSession


@contextlib.asynccontextmanager
async def socketio_client(
    url: str, handlers: Mapping[str, Callable[[Any], None]] | None = None
) -> AsyncIterator[socketio.AsyncClient]:
    """python-socketio's client with these event handlers, connected over websocket;
    disconnected at the end."""
    client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
    for event, handler in (handlers or {}).items():
        client.on(event, handler)
    await client.connect(url, transports=["websocket"], wait_timeout=STEP_TIMEOUT)
    try:
        yield client
    finally:
        await client.disconnect()


async def call_ok(client: socketio.AsyncClient, event: str, data: Any) -> None:
    """Emit with an ack; a refusal (`success` not true) is an error."""
    reply = await client.call(event, data, timeout=STEP_TIMEOUT)
    if not isinstance(reply, dict) or reply.get("success") is not True:
        raise BenchError(f"{event} refused: {reply!r}")


@contextlib.asynccontextmanager
async def janus_publisher(
    http: aiohttp.ClientSession, janus_url: str, room: int
) -> AsyncIterator[dict[str, int]]:
    """A publisher in `room` (joined, no media): yields the `set_feed_id` request a sender
    page would send (feedId, sessionId, videoroomId). Leaves the room at the end."""
    async with asyncio.timeout(STEP_TIMEOUT):
        session = await JanusSession.create(http, janus_url, request_timeout=STEP_TIMEOUT)
    try:
        handle = await session.attach("janus.plugin.videoroom")
        join = {"request": "join", "ptype": "publisher", "room": room, "pin": ""}
        joined, _ = await handle.message(join, timeout=STEP_TIMEOUT)
        if joined.get("videoroom") != "joined" or not isinstance(joined.get("id"), int):
            raise BenchError(f"Janus join refused: {joined}")
        yield {"feedId": joined["id"], "sessionId": session.id, "videoroomId": handle.id}
    finally:
        await session.destroy()


class FeedWatcher:
    """A receiver as the browser page is: `new_feed` and `remove_feed` of slot 0, each with
    the wall-clock time (`time.time()`) it arrived."""

    def __init__(self) -> None:
        self._events: asyncio.Queue[tuple[str, dict[str, Any], float]] = asyncio.Queue()
        self.handlers = {e: functools.partial(self._on, e) for e in ("new_feed", "remove_feed")}

    def _on(self, event: str, data: dict[str, Any]) -> None:
        if data.get("slot") == 0:
            self._events.put_nowait((event, data, time.time()))

    async def new_feed(self, camera: Child, timeout: float = STEP_TIMEOUT) -> tuple[int, float]:
        """The feed id of the next `new_feed` and when it came; fails with `camera`'s log
        if none comes within `timeout`."""
        data, at = await self.next("new_feed", camera, timeout)
        if not isinstance(data.get("feedId"), int):
            raise BenchError(f"new_feed without a feedId: {data}")
        return data["feedId"], at

    async def next(
        self, event: str, camera: Child, timeout: float = STEP_TIMEOUT
    ) -> tuple[dict[str, Any], float]:
        """The next `event` (others are skipped) and when it came."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    name, data, at = await self._events.get()
                    if name == event:
                        return data, at
        except TimeoutError:
            state = "running" if camera.alive() else "exited"
            message = f"no {event} within {timeout} s ({camera.name} {state})"
            raise BenchError(f"{message}\n{camera.log_tail()}") from None


@contextlib.asynccontextmanager
async def feed_watcher(url: str) -> AsyncIterator[FeedWatcher]:
    watcher = FeedWatcher()
    async with socketio_client(url, watcher.handlers):
        yield watcher
