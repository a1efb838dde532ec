"""wire.janus against a real Janus (and one fake for what a real one can't stage)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cvh_camera.janus import (
    JanusError,
    JanusHandle,
    JanusSession,
    JanusUnavailable,
    send_plugin_message,
)
from cvh_camera.janus_local import LocalJanus, find_free_port

VIDEOROOM = "janus.plugin.videoroom"
ROOM_SECRET = "room-secret"
WAIT = 10.0  # upper bound for anything that should happen promptly


def new_room() -> int:
    return 1000 + secrets.randbelow(10**9)


async def create_room(handle: JanusHandle, admin_key: str) -> int:
    room = new_room()
    data = await handle.request(
        {
            "request": "create",
            "room": room,
            "admin_key": admin_key,
            "secret": ROOM_SECRET,
            "publishers": 4,
            "videocodec": "h264",
            "h264_profile": "42e01f",
            "bitrate": 128000,
        }
    )
    assert data["videoroom"] == "created"
    assert data["room"] == room
    return room


@pytest.fixture
async def session(
    http: aiohttp.ClientSession, janus_session_scope: LocalJanus
) -> AsyncIterator[JanusSession]:
    janus_session = await JanusSession.create(http, janus_session_scope.http_url)
    yield janus_session
    await janus_session.destroy()


async def test_create_session_and_attach_videoroom(session: JanusSession) -> None:
    handle = await session.attach(VIDEOROOM)
    assert session.id > 0
    assert handle.id > 0
    assert handle.session is session
    assert not session.lost
    await handle.detach()
    await handle.detach()  # idempotent


async def test_room_create_exists_destroy(
    session: JanusSession, janus_session_scope: LocalJanus
) -> None:
    handle = await session.attach(VIDEOROOM)
    room = await create_room(handle, janus_session_scope.admin_key)
    assert (await handle.request({"request": "exists", "room": room}))["exists"] is True

    with pytest.raises(JanusError) as exists:
        await handle.request(
            {"request": "create", "room": room, "admin_key": janus_session_scope.admin_key}
        )
    assert exists.value.code == 427

    data = await handle.request({"request": "destroy", "room": room, "secret": ROOM_SECRET})
    assert data["videoroom"] == "destroyed"
    assert (await handle.request({"request": "exists", "room": room}))["exists"] is False

    with pytest.raises(JanusError) as missing:
        await handle.request({"request": "destroy", "room": room, "secret": ROOM_SECRET})
    assert missing.value.code == 426
    assert str(room) in missing.value.reason


async def test_join_as_publisher_resolves_through_long_poll(
    session: JanusSession, janus_session_scope: LocalJanus
) -> None:
    handle = await session.attach(VIDEOROOM)
    room = await create_room(handle, janus_session_scope.admin_key)
    join = {"request": "join", "ptype": "publisher", "room": room, "display": "cam"}

    data, jsep = await handle.message(join, timeout=WAIT)

    assert data["videoroom"] == "joined"
    assert isinstance(data["id"], int)
    assert jsep is None
    with pytest.raises(JanusError) as again:  # an asynchronous plugin error
        await handle.message(join, timeout=WAIT)
    assert again.value.code == 425


async def test_send_plugin_message_configures_a_publisher(
    session: JanusSession, janus_session_scope: LocalJanus
) -> None:
    handle = await session.attach(VIDEOROOM)
    room = await create_room(handle, janus_session_scope.admin_key)
    await handle.message({"request": "join", "ptype": "publisher", "room": room}, timeout=WAIT)
    url = janus_session_scope.http_url

    async with aiohttp.ClientSession() as other_client:
        body = {"request": "configure", "bitrate": 256000}
        await send_plugin_message(other_client, url, session.id, handle.id, body)
        with pytest.raises(JanusError) as no_handle:
            await send_plugin_message(other_client, url, session.id, handle.id + 1, body)
        dead_url = f"http://127.0.0.1:{find_free_port()}/janus"
        with pytest.raises(JanusUnavailable):
            await send_plugin_message(other_client, dead_url, session.id, handle.id, body)

    assert no_handle.value.code == 459
    # The configure's answer carries the other client's transaction: an unsolicited event.
    event = await handle.next_event(timeout=WAIT)
    assert event["plugindata"]["data"]["configured"] == "ok"


async def test_session_is_lost_when_janus_stops(
    http: aiohttp.ClientSession, janus: LocalJanus
) -> None:
    session = await JanusSession.create(http, janus.http_url)
    handle = await session.attach(VIDEOROOM)
    waiter = asyncio.create_task(handle.next_event())
    try:
        await asyncio.to_thread(janus.stop)
        async with asyncio.timeout(WAIT):
            reason = await session.wait_lost()
            with pytest.raises(JanusUnavailable):
                await waiter
    finally:
        waiter.cancel()
    assert isinstance(reason, JanusUnavailable)
    assert session.lost
    with pytest.raises(JanusUnavailable):
        await handle.request({"request": "exists", "room": 1})
    with pytest.raises(JanusUnavailable):
        await handle.next_event(timeout=WAIT)
    with pytest.raises(JanusUnavailable):
        await session.attach(VIDEOROOM)
    async with asyncio.timeout(WAIT):
        await session.destroy()

    await asyncio.to_thread(janus.restart)  # same port: a new session works again
    again = await JanusSession.create(http, janus.http_url)
    await again.destroy()


async def test_keepalive_timeout_loses_a_session_on_a_hung_janus(
    http: aiohttp.ClientSession, janus: LocalJanus
) -> None:
    session = await JanusSession.create(
        http, janus.http_url, request_timeout=0.5, keepalive_interval=0.2
    )
    pid = janus.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # Janus stops answering; its sockets stay open
    try:
        async with asyncio.timeout(WAIT):
            reason = await session.wait_lost()
    finally:
        os.kill(pid, signal.SIGCONT)
        await session.destroy()
    assert "no answer within" in str(reason)


async def test_destroy_is_idempotent_and_leaves_no_tasks(
    http: aiohttp.ClientSession, janus_session_scope: LocalJanus
) -> None:
    tasks_before = asyncio.all_tasks()
    session = await JanusSession.create(http, janus_session_scope.http_url)
    handle = await session.attach(VIDEOROOM)
    assert len(asyncio.all_tasks()) > len(tasks_before)

    await session.destroy()
    await session.destroy()

    assert asyncio.all_tasks() == tasks_before
    assert isinstance(await session.wait_lost(), JanusUnavailable)
    with pytest.raises(JanusUnavailable):
        await handle.next_event(timeout=WAIT)
    with pytest.raises(JanusError) as gone:  # Janus itself forgot the session
        body = {"request": "exists", "room": 1}
        await send_plugin_message(http, janus_session_scope.http_url, session.id, handle.id, body)
    assert gone.value.code == 458


# -- a fake Janus, for event orderings and losses a real one can't be made to produce ------


class FakeJanus:
    """Session 1, handle 2; messages are acked; the test scripts the long poll's answers."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[str] = asyncio.Queue()  # transactions, in arrival order
        self.polls: asyncio.Queue[web.Response] = asyncio.Queue()
        self.app = web.Application()
        self.app.router.add_post("/janus", self.create)
        self.app.router.add_post("/janus/1", self.session_request)
        self.app.router.add_post("/janus/1/2", self.handle_request)
        self.app.router.add_get("/janus/1", self.poll)

    @staticmethod
    def answer(request_body: dict[str, Any], **fields: Any) -> web.Response:
        return web.json_response({"transaction": request_body["transaction"], **fields})

    async def create(self, request: web.Request) -> web.Response:
        return self.answer(await request.json(), janus="success", data={"id": 1})

    async def session_request(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["janus"] == "attach":
            return self.answer(body, janus="success", data={"id": 2})
        return self.answer(body, janus="ack" if body["janus"] == "keepalive" else "success")

    async def handle_request(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.messages.put_nowait(body["transaction"])
        return self.answer(body, janus="ack")

    async def poll(self, request: web.Request) -> web.Response:
        return await self.polls.get()


def plugin_event(transaction: str | None, data: dict[str, Any]) -> dict[str, Any]:
    event = {"janus": "event", "sender": 2, "plugindata": {"plugin": VIDEOROOM, "data": data}}
    if transaction is not None:
        event["transaction"] = transaction
    return event


@pytest.fixture
async def fake_janus() -> AsyncIterator[tuple[FakeJanus, str]]:
    fake = FakeJanus()
    runner = web.AppRunner(fake.app, shutdown_timeout=0.1)
    await runner.setup()
    port = find_free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}/janus"
    await runner.cleanup()


async def test_events_are_dispatched_by_transaction_then_sender(
    http: aiohttp.ClientSession, fake_janus: tuple[FakeJanus, str]
) -> None:
    fake, url = fake_janus
    session = await JanusSession.create(http, url)
    try:
        handle = await session.attach(VIDEOROOM)
        first = asyncio.create_task(handle.message({"request": "one"}, timeout=WAIT))
        second = asyncio.create_task(handle.message({"request": "two"}, timeout=WAIT))
        async with asyncio.timeout(WAIT):
            txn_a, txn_b = await fake.messages.get(), await fake.messages.get()
        events = [
            plugin_event(txn_b, {"answer": txn_b}),
            {"janus": "webrtcup", "sender": 2},
            plugin_event("somebody-else", {"configured": "ok"}),
            plugin_event(txn_a, {"answer": txn_a}),
        ]
        fake.polls.put_nowait(web.json_response(events))
        async with asyncio.timeout(WAIT):
            results = {(await first)[0]["answer"], (await second)[0]["answer"]}
            assert (await handle.next_event())["janus"] == "webrtcup"
            assert (await handle.next_event())["plugindata"]["data"] == {"configured": "ok"}
        assert results == {txn_a, txn_b}
    finally:
        await session.destroy()


async def test_pending_message_fails_when_the_session_is_lost(
    http: aiohttp.ClientSession, fake_janus: tuple[FakeJanus, str]
) -> None:
    fake, url = fake_janus
    session = await JanusSession.create(http, url)
    try:
        handle = await session.attach(VIDEOROOM)
        pending = asyncio.create_task(handle.message({"request": "join"}, timeout=WAIT))
        async with asyncio.timeout(WAIT):
            await fake.messages.get()  # acked: the request now waits for its event
            fake.polls.put_nowait(web.Response(status=404))  # what Janus says for a lost session
            with pytest.raises(JanusUnavailable):
                await pending
            assert isinstance(await session.wait_lost(), JanusUnavailable)
        with pytest.raises(JanusUnavailable):
            await handle.next_event(timeout=WAIT)
    finally:
        await session.destroy()
