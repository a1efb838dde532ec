"""The slot server and its Janus: restarts, a late Janus, pin changes (each test its own Janus)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from cvh_camera.janus import JanusError
from cvh_camera.janus_local import LocalJanus
from cvh_camera.server.app import ROOM
from cvh_camera.server.config import PreactivatedSlot
from cvh_camera.server.janus_room import RoomState
from tests.integration.harness import clients, run_server, server_config, wait_until
from tests.integration.test_server import (
    authenticate,
    janus_publisher,
    room_exists,
    server_feeds,
)


async def test_janus_restart_removes_feeds_and_recreates_the_room(
    janus: LocalJanus, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = server_config(janus, tmp_path, preactivated=(PreactivatedSlot(1, "tok"),))
    async with run_server(config) as server, clients(server.url, 2) as (receiver, sender):
        await authenticate(sender)
        async with server_feeds(server) as (feed,):
            assert (await sender.call("set_feed_id", feed))["success"]
            await receiver.next("new_feed")

            janus.restart()
            assert await receiver.next("remove_feed") == {"slot": 1}
            await server.wait_notify("remove_feed 1")
        await server.app[ROOM].wait_ready(15)
        assert await room_exists(http, janus, config.janus.room)

        # socket.io kept serving: the same sender republishes without a new sender_init
        assert await receiver.call("query_state") == {}
        async with server_feeds(server) as (feed,):
            assert (await sender.call("set_feed_id", feed))["success"]
            assert (await receiver.next("new_feed"))["feedId"] == feed["feedId"]


async def test_server_serves_before_janus_is_up(janus: LocalJanus, tmp_path: Path) -> None:
    janus.stop()
    config = server_config(janus, tmp_path)
    async with run_server(config, wait_janus=False) as server, clients(server.url) as (client,):
        room = server.app[ROOM]
        await wait_until(lambda: room.state is RoomState.DOWN)
        assert await client.call("query_state") == {}
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as resp:
            health = await resp.json()
        assert health["janus"]["state"] == "down" and health["janus"]["error"]
        janus.start()
        await room.wait_ready(20)


async def test_edit_pin_changes_the_room_pin(
    janus: LocalJanus, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = server_config(janus, tmp_path, janus_pin="1111")
    async with run_server(config) as server:
        room = config.janus.room
        server.command("edit_pin 2468")

        async def old_pin_refused() -> bool:
            try:
                session, _, _ = await janus_publisher(http, janus, room, pin="1111")
            except JanusError as error:
                assert error.code == 433  # unauthorized: wrong pin
                return True
            await session.destroy()
            return False

        async with asyncio.timeout(
            10
        ):  # the edit is sent asynchronously: ask Janus until it has it
            while not await old_pin_refused():
                await asyncio.sleep(0.05)
        session, _, feed_id = await janus_publisher(http, janus, room, pin="2468")
        assert feed_id > 0
        await session.destroy()
