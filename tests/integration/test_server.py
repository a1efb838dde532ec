"""The slot server over the wire: real Janus, real server app, real socket.io clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cvh_camera.janus import JanusHandle, JanusSession
from cvh_camera.janus_local import LocalJanus
from cvh_camera.server.config import PreactivatedSlot
from tests.integration.harness import (
    Client,
    RunningServer,
    clients,
    run_server,
    server_config,
    wait_until,
)


@pytest.fixture
async def server(janus_session_scope: LocalJanus, tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = server_config(janus_session_scope, tmp_path)
    config = server_config(janus_session_scope, tmp_path, room=config.port)  # a room per test
    async with run_server(config) as running:
        yield running


async def janus_publisher(
    http: aiohttp.ClientSession, janus: LocalJanus, room: int, pin: str = ""
) -> tuple[JanusSession, JanusHandle, int]:
    """Join the room as a publisher the way the appliance does (no media needed)."""
    session = await JanusSession.create(http, janus.http_url)
    handle = await session.attach("janus.plugin.videoroom")
    body: dict[str, Any] = {"request": "join", "ptype": "publisher", "room": room}
    if pin:
        body["pin"] = pin
    joined, _ = await handle.message(body)
    return session, handle, joined["id"]


async def room_exists(http: aiohttp.ClientSession, janus: LocalJanus, room: int) -> bool:
    session = await JanusSession.create(http, janus.http_url)
    try:
        handle = await session.attach("janus.plugin.videoroom")
        answer = await handle.request({"request": "exists", "room": room})
        return bool(answer["exists"])
    finally:
        await session.destroy()


async def participants(http: aiohttp.ClientSession, janus_url: str, room: int) -> list[int]:
    session = await JanusSession.create(http, janus_url)
    try:
        handle = await session.attach("janus.plugin.videoroom")
        answer = await handle.request({"request": "listparticipants", "room": room})
        return [p["id"] for p in answer["participants"]]
    finally:
        await session.destroy()


async def authenticate(client: Client, slot: int = 1, token: str = "tok") -> None:
    answer = await client.call("sender_init", {"slot": slot, "token": token})
    assert answer == {"success": True, "message": "Socket authenticated"}


@contextlib.asynccontextmanager
async def joined_feeds(
    janus_url: str, room: int, count: int = 1
) -> AsyncIterator[list[dict[str, Any]]]:
    """`set_feed_id` reports of publishers that joined `room` (no media needed): the server
    only takes a feed id that Janus lists in its room."""
    async with aiohttp.ClientSession() as http:
        sessions: list[JanusSession] = []
        feeds: list[dict[str, Any]] = []
        try:
            for _ in range(count):
                session = await JanusSession.create(http, janus_url)
                sessions.append(session)
                handle = await session.attach("janus.plugin.videoroom")
                body = {"request": "join", "ptype": "publisher", "room": room}
                joined, _ = await handle.message(body)
                feeds.append(
                    {"feedId": joined["id"], "sessionId": session.id, "videoroomId": handle.id}
                )
            yield feeds
        finally:
            for session in sessions:
                await session.destroy()


def server_feeds(server: RunningServer, count: int = 1) -> Any:
    return joined_feeds(server.config.janus.url, server.config.janus.room, count)


async def test_receiver_follows_a_real_publisher(
    server: RunningServer, janus_session_scope: LocalJanus, http: aiohttp.ClientSession
) -> None:
    server.command("activate_slot 1 tok <b>Desk</b>")
    session, handle, feed_id = await janus_publisher(
        http, janus_session_scope, server.config.janus.room
    )
    try:
        async with clients(server.url, 2) as (receiver, sender):
            await wait_until(lambda: server.service.table[1].active)
            await authenticate(sender)
            report = {"feedId": feed_id, "sessionId": session.id, "videoroomId": handle.id}
            answer = await sender.call("set_feed_id", {**report, "customName": "Anna & Bob"})
            assert answer == {
                "success": True,
                "message": "Successfully set feed id - you are now using this slot",
                "controllerBitrateLimit": 128000,
            }
            new_feed = await receiver.next("new_feed")
            assert new_feed["slot"] == 1 and new_feed["feedId"] == feed_id
            assert new_feed["annotation"] == "<b>Desk</b>"
            state = await receiver.call("query_state")
            assert state == {"1": {k: v for k, v in new_feed.items() if k != "slot"}}
            await server.wait_notify("new_feed 1")
            await server.wait_notify("custom_name 1 Anna &amp; Bob")

            # the controller's limit goes to the sender and, as a configure, to its Janus handle
            server.command("set_bitrate_limit 1 64000")
            assert await sender.next("new_controller_bitrate_limit") == {"bitrateLimit": 64000}
            event = await handle.next_event(timeout=10)
            assert event["plugindata"]["data"].get("configured") == "ok"
            answer = await sender.call("set_bitrate_limit", {"bitrateLimit": 32000})
            assert answer == {"success": True, "message": "Your bitrate limit was updated"}
            event = await handle.next_event(timeout=10)
            assert event["plugindata"]["data"].get("configured") == "ok"

            room = server.config.janus.room
            assert await participants(http, janus_session_scope.http_url, room) == [feed_id]
            await sender.close()
            assert await receiver.next("remove_feed") == {"slot": 1}
            await server.wait_notify("remove_feed 1")
            # the sender's socket is gone: its publisher is kicked, the seat is free
            async with asyncio.timeout(10):
                while await participants(http, janus_session_scope.http_url, room):
                    await asyncio.sleep(0.05)
            assert await receiver.call("query_state") == {}
            assert server.service.table[1].active
    finally:
        await session.destroy()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "No data provided"),
        ((None,), "No data provided"),
        (([1],), "Invalid data provided - expected an object, got [1]"),
        (({"slot": "one"},), "An invalid camera slot was provided (one)"),
        (({"slot": 9},), "This camera slot does not exist"),
        (({"slot": 2},), "This camera slot is not activated, contact your moderator"),
        (({"slot": "1"},), "No token provided"),
        (({"slot": 1, "token": "bad"},), "Invalid token, contact your moderator"),
    ],
)
async def test_sender_init_refusals_over_the_wire(
    server: RunningServer, args: tuple[Any, ...], message: str
) -> None:
    server.command("activate_slot 1 tok")
    await wait_until(lambda: server.service.table[1].active)
    async with clients(server.url) as (sender,):
        assert await sender.call("sender_init", *args) == {"success": False, "message": message}
        assert await sender.call("query_state") == {}


async def test_second_sender_and_stale_token(server: RunningServer) -> None:
    server.command("activate_slot 0 first")
    await wait_until(lambda: server.service.table[0].active)
    async with clients(server.url, 3) as (one, two, three), server_feeds(server, 2) as feeds:
        feed, other = feeds
        await authenticate(one, 0, "first")
        await authenticate(two, 0, "first")
        assert (await one.call("set_feed_id", feed))["success"]
        assert await two.call("set_feed_id", feed) == {
            "success": False,
            "message": "There is already somebody using this slot",
        }
        server.command("refresh_token 0 second")
        await wait_until(lambda: server.service.table[0].token_matches("second"))
        await one.close()
        assert (await three.next("remove_feed")) == {"slot": 0}
        assert await two.call("set_feed_id", feed) == {
            "success": False,
            "message": "The provided token is not valid anymore - the feed is not transmitted",
        }
        await authenticate(three, 0, "second")
        assert (await three.call("set_feed_id", other))["success"]


async def test_controller_commands_reach_receivers(server: RunningServer) -> None:
    server.command("activate_slot 3 tok")
    server.command("hide 3")  # stored before the feed exists, delivered with it
    async with clients(server.url, 2) as (receiver, sender), server_feeds(server) as (feed,):
        await wait_until(lambda: server.service.table[3].active)
        await authenticate(sender, 3)
        await sender.call("set_feed_id", feed)
        assert (await receiver.next("new_feed"))["visibility"] == {"command": "hide", "params": []}
        server.command("show 3")
        server.command("set_geometry_relative_to_window 3 lt 10 20 640 360 2")
        server.command("set_annotation 3 <i>live</i>")
        server.command("remove_annotation 3")
        server.command("not_a_command 3")  # logged and ignored
        server.command("hide 99")
        assert await receiver.next("command") == {"slot": 3, "command": "show", "params": []}
        assert await receiver.next("command") == {
            "slot": 3,
            "command": "set_geometry_relative_to_window",
            "params": ["lt", "10", "20", "640", "360", "2"],
        }
        assert await receiver.next("set_annotation") == {"slot": 3, "annotation": "<i>live</i>"}
        assert await receiver.next("remove_annotation") == {"slot": 3}
        state = await receiver.call("query_state")
        assert state["3"]["geometry"]["command"] == "set_geometry_relative_to_window"
        assert receiver.pending("command") == 0


async def test_deactivation_kicks_the_sender(server: RunningServer) -> None:
    server.command("activate_slot 2 tok")
    async with clients(server.url, 2) as (receiver, sender), server_feeds(server) as (feed,):
        await wait_until(lambda: server.service.table[2].active)
        await authenticate(sender, 2)
        await sender.call("set_feed_id", feed)
        await receiver.next("new_feed")
        server.command("deactivate_slot 2")
        assert await receiver.next("remove_feed") == {"slot": 2}
        await wait_until(sender.disconnected.is_set)
        await server.wait_notify("remove_feed 2")
        assert not server.service.table[2].active


async def test_unknown_event_and_extra_arguments_are_answered(server: RunningServer) -> None:
    async with clients(server.url) as (client,):
        assert await client.sio.call("no_such_event", {"x": 1}, timeout=5) == {
            "success": False,
            "message": "Unknown event no_such_event",
        }
        answer = await client.sio.call("sender_init", ({"slot": 0}, "extra", 3), timeout=5)
        assert answer == {
            "success": False,
            "message": "This camera slot is not activated, contact your moderator",
        }
        answer = await client.sio.call("change_name", {"newName": "x"}, timeout=5)
        assert answer["success"] is False


async def test_shutdown_says_goodbye_and_destroys_the_room(
    janus_session_scope: LocalJanus, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = server_config(janus_session_scope, tmp_path)
    config = server_config(
        janus_session_scope,
        tmp_path,
        room=config.port,
        preactivated=(PreactivatedSlot(0, "tok"),),
    )
    receiver = Client()
    async with run_server(config) as running:
        assert await room_exists(http, janus_session_scope, config.janus.room)
        await receiver.connect(running.url)
        async with clients(running.url) as (sender,), server_feeds(running) as (feed,):
            await authenticate(sender, 0)
            await sender.call("set_feed_id", feed)
            await receiver.next("new_feed")
            # leaving the block shuts the server down while both are connected
    assert await receiver.next("remove_all_feeds", timeout=5) is None
    assert not await room_exists(http, janus_session_scope, config.janus.room)
    await receiver.close()


async def test_custom_socketio_path(janus_session_scope: LocalJanus, tmp_path: Path) -> None:
    config = server_config(janus_session_scope, tmp_path)
    config = server_config(
        janus_session_scope, tmp_path, room=config.port, socketio_path="/socket.io/5000"
    )
    async with run_server(config) as running, clients(running.url, path="/socket.io/5000") as (c,):
        assert await c.call("query_state") == {}
