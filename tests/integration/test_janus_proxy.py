"""The slot server's `/janus` proxy against a real Janus: what the pages need goes through,
room management, other plugins, other rooms and recording do not, and long polls never
hold up other requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cvh_camera.janus import JanusSession
from cvh_camera.janus_local import LocalJanus, find_free_port
from cvh_camera.server.janus_filter import MAX_BODY, VIDEOROOM
from tests.integration.harness import TIMEOUT, RunningServer, run_server, server_config, wait_until

POLLS = 150  # above aiohttp's default of 100 connections per connector
KEEPALIVE_BUDGET = 1.0  # seconds; Janus answers a keepalive in milliseconds


# ---------------------------------------------------------------- HTTP helpers


def _transaction() -> str:
    return secrets.token_hex(6)


async def post(http: aiohttp.ClientSession, url: str, payload: Any) -> tuple[int, Any]:
    """POST a Janus request (a transaction is added); return HTTP status and JSON answer."""
    if isinstance(payload, dict):
        payload = {"transaction": _transaction(), **payload}
    return await post_raw(http, url, json.dumps(payload).encode())


async def post_raw(http: aiohttp.ClientSession, url: str, data: Any) -> tuple[int, Any]:
    async with asyncio.timeout(TIMEOUT), http.post(url, data=data) as answer:
        return answer.status, await answer.json(content_type=None)


async def get(
    http: aiohttp.ClientSession, url: str, params: dict[str, str], seconds: float = TIMEOUT
) -> tuple[int, Any]:
    async with asyncio.timeout(seconds), http.get(url, params=params) as answer:
        return answer.status, await answer.json(content_type=None)


def refusal(answer: Any) -> str:
    """The reason of a refusal by the proxy (code 403); fails on anything else."""
    assert answer["janus"] == "error", answer
    assert answer["error"]["code"] == 403, answer
    reason: str = answer["error"]["reason"]
    return reason


@dataclass
class Link:
    """A Janus session and a VideoRoom handle made through the proxy."""

    session: str  # URL of the session
    handle: str  # URL of the handle

    async def message(self, http: aiohttp.ClientSession, body: dict[str, Any]) -> Any:
        status, answer = await post(http, self.handle, {"janus": "message", "body": body})
        assert status == 200
        return answer


async def open_link(http: aiohttp.ClientSession, proxy: str) -> Link:
    status, created = await post(http, proxy, {"janus": "create"})
    assert (status, created["janus"]) == (200, "success"), created
    session = f"{proxy}/{created['data']['id']}"
    status, attached = await post(http, session, {"janus": "attach", "plugin": VIDEOROOM})
    assert (status, attached["janus"]) == (200, "success"), attached
    return Link(session, f"{session}/{attached['data']['id']}")


async def next_event(http: aiohttp.ClientSession, link: Link, transaction: str) -> Any:
    """Long-poll the session (through the proxy) until the event of `transaction` comes."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            status, events = await get(http, link.session, {"maxev": "10", "rid": "1"})
            assert status == 200, events
            for event in events if isinstance(events, list) else [events]:
                if event.get("transaction") == transaction:
                    return event


async def join_as_publisher(http: aiohttp.ClientSession, link: Link, room: int) -> int:
    """The sender page's join; returns the publisher (feed) id from the `joined` event."""
    body = {"request": "join", "ptype": "publisher", "room": room, "display": "slot 0"}
    transaction = _transaction()
    status, answer = await post(
        http, link.handle, {"janus": "message", "body": body, "transaction": transaction}
    )
    assert (status, answer["janus"]) == (200, "ack"), answer
    event = await next_event(http, link, transaction)
    data = event["plugindata"]["data"]
    assert data["videoroom"] == "joined", data
    feed: int = data["id"]
    return feed


# ---------------------------------------------------------------- Janus, seen directly


@contextlib.asynccontextmanager
async def direct_handle(http: aiohttp.ClientSession, janus: LocalJanus) -> AsyncIterator[Any]:
    """A VideoRoom handle on Janus itself, bypassing the proxy, to look at the room."""
    session = await JanusSession.create(http, janus.http_url)
    try:
        yield await session.attach(VIDEOROOM)
    finally:
        await session.destroy()


async def room_exists(http: aiohttp.ClientSession, janus: LocalJanus, room: int) -> bool:
    async with direct_handle(http, janus) as handle:
        data = await handle.request({"request": "exists", "room": room})
    return bool(data["exists"])


async def participant_ids(http: aiohttp.ClientSession, janus: LocalJanus, room: int) -> list[int]:
    async with direct_handle(http, janus) as handle:
        data = await handle.request({"request": "listparticipants", "room": room})
    return [p["id"] for p in data["participants"]]


# ---------------------------------------------------------------- fixtures


@pytest.fixture
async def server(janus_session_scope: LocalJanus, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A slot server with a room of its own (numbered after its port) on the shared Janus."""
    port = find_free_port()
    config = server_config(janus_session_scope, tmp_path, port=port, room=port)
    async with run_server(config) as running:
        yield running


@pytest.fixture
def proxy(server: RunningServer) -> str:
    return f"{server.url}/janus"


@pytest.fixture
def room(server: RunningServer) -> int:
    return server.config.janus.room


@pytest.fixture
async def link(http: aiohttp.ClientSession, proxy: str) -> AsyncIterator[Link]:
    made = await open_link(http, proxy)
    yield made
    await post(http, made.session, {"janus": "destroy"})


# ---------------------------------------------------------------- what the pages need


async def test_the_pages_flow_goes_through(
    http: aiohttp.ClientSession, proxy: str, room: int, janus_session_scope: LocalJanus
) -> None:
    status, info = await get(http, f"{proxy}/info", {})
    assert (status, info["janus"]) == (200, "server_info")

    link = await open_link(http, proxy)
    feed = await join_as_publisher(http, link, room)
    assert await participant_ids(http, janus_session_scope, room) == [feed]

    status, answer = await post(http, link.session, {"janus": "keepalive"})
    assert (status, answer["janus"]) == (200, "ack")
    listed = await link.message(http, {"request": "listparticipants", "room": room})
    assert [p["id"] for p in listed["plugindata"]["data"]["participants"]] == [feed]
    status, answer = await post(
        http, link.handle, {"janus": "trickle", "candidate": {"completed": True}}
    )
    assert (status, answer["janus"]) == (200, "ack"), answer

    status, answer = await post(http, link.handle, {"janus": "detach"})
    assert (status, answer["janus"]) == (200, "success"), answer
    assert await participant_ids(http, janus_session_scope, room) == []
    status, answer = await post(http, link.session, {"janus": "destroy"})
    assert (status, answer["janus"]) == (200, "success"), answer
    status, answer = await post(http, link.session, {"janus": "keepalive"})
    assert answer["error"]["code"] == 458  # Janus's own "no such session": it really is gone


async def test_a_subscriber_join_reaches_janus(
    http: aiohttp.ClientSession, proxy: str, room: int, link: Link
) -> None:
    feed = await join_as_publisher(http, link, room)
    viewer = await open_link(http, proxy)
    body = {"request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feed}]}
    transaction = _transaction()
    status, answer = await post(
        http, viewer.handle, {"janus": "message", "body": body, "transaction": transaction}
    )
    assert (status, answer["janus"]) == (200, "ack"), answer
    event = await next_event(http, viewer, transaction)
    # the publisher sends nothing yet: Janus says so in its own words, our proxy let it pass
    assert event["plugindata"]["data"].get("error_code") == 428, event
    await post(http, viewer.session, {"janus": "destroy"})


# ---------------------------------------------------------------- what they must not do


async def test_room_management_is_refused_even_with_the_secrets(
    http: aiohttp.ClientSession,
    server: RunningServer,
    room: int,
    link: Link,
    proxy: str,
    janus_session_scope: LocalJanus,
) -> None:
    janus = janus_session_scope
    secret, admin_key = server.config.janus.secret, janus.admin_key
    feed = await join_as_publisher(http, link, room)
    other = await open_link(http, proxy)
    new_room = find_free_port()
    refused = {
        "create": {"request": "create", "room": new_room, "admin_key": admin_key},
        "destroy": {"request": "destroy", "room": room, "secret": secret},
        "edit": {"request": "edit", "room": room, "secret": secret, "new_pin": "taken"},
        "kick": {"request": "kick", "room": room, "secret": secret, "id": feed},
        "rtp_forward": {
            "request": "rtp_forward", "room": room, "publisher_id": feed, "secret": secret,
            "admin_key": admin_key, "host": "127.0.0.1", "streams": [{"mid": "0", "port": 9}],
        },
        "stop_rtp_forward": {
            "request": "stop_rtp_forward", "room": room, "publisher_id": feed, "stream_id": 1,
            "secret": secret,
        },
        "enable_recording": {
            "request": "enable_recording", "room": room, "record": True, "secret": secret,
        },
        "moderate": {"request": "moderate", "room": room, "id": feed, "mid": "0", "mute": True},
        "list": {"request": "list", "admin_key": admin_key},
    }  # fmt: skip
    for request, body in refused.items():
        answer = await other.message(http, body)
        assert f"videoroom request '{request}' is not allowed" in refusal(answer), request
        assert answer["transaction"]  # their own, echoed
    assert await room_exists(http, janus, room)
    assert not await room_exists(http, janus, new_room)
    assert await participant_ids(http, janus, room) == [feed]  # not kicked


async def test_recording_and_the_bitrate_are_refused(
    http: aiohttp.ClientSession, room: int, link: Link
) -> None:
    await join_as_publisher(http, link, room)
    answer = await link.message(http, {"request": "configure", "record": True, "filename": "/x"})
    assert refusal(answer).startswith("recording is not allowed")
    answer = await link.message(http, {"request": "configure", "bitrate": 10_000_000})
    assert refusal(answer).startswith("the bitrate is set by the slot server")


async def test_other_plugins_are_refused(
    http: aiohttp.ClientSession, link: Link, janus_session_scope: LocalJanus
) -> None:
    # The test Janus loads only the VideoRoom: Janus itself would answer 460 "No such
    # plugin"; 403 and this reason come from the proxy.
    for plugin in ("janus.plugin.streaming", "janus.plugin.echotest", "janus.plugin.sip"):
        status, answer = await post(http, link.session, {"janus": "attach", "plugin": plugin})
        assert status == 200
        assert f"attaching to plugin '{plugin}' is not allowed" in refusal(answer)


async def test_another_room_is_refused(
    http: aiohttp.ClientSession, room: int, link: Link, janus_session_scope: LocalJanus
) -> None:
    other_room = find_free_port()
    async with direct_handle(http, janus_session_scope) as handle:
        created = {
            "request": "create",
            "room": other_room,
            "admin_key": janus_session_scope.admin_key,
        }
        await handle.request(created)
        try:
            join = {"request": "join", "ptype": "publisher", "room": other_room}
            answer = await link.message(http, join)
            assert refusal(answer) == f"room {other_room} is not this server's room ({room})"
            listing = {"request": "listparticipants", "room": other_room}
            assert "is not this server's room" in refusal(await link.message(http, listing))
            assert await participant_ids(http, janus_session_scope, other_room) == []
        finally:
            await handle.request({"request": "destroy", "room": other_room})


async def test_core_requests_beyond_the_pages_are_refused(
    http: aiohttp.ClientSession, proxy: str, link: Link
) -> None:
    session_id = int(link.session.rsplit("/", 1)[1])
    cases = [
        (proxy, {"janus": "attach", "plugin": VIDEOROOM, "session_id": session_id}),
        (proxy, {"janus": "create", "id": 4242}),
        (proxy, {"janus": "info"}),
        (link.session, {"janus": "claim"}),
        (link.handle, {"janus": "hangup"}),
    ]
    for url, payload in cases:
        status, answer = await post(http, url, payload)
        assert status == 200
        refusal(answer)
    status, answer = await get(http, link.session, {"maxev": "1", "apisecret": "x"})
    assert status == 403
    assert "'apisecret' is not allowed" in refusal(answer)
    status, answer = await get(http, link.handle, {})
    assert status == 403
    refusal(answer)


async def test_an_oversized_body_gets_413(
    http: aiohttp.ClientSession, link: Link, room: int
) -> None:
    offer = {"type": "offer", "sdp": "a=x\r\n" * (MAX_BODY // 5)}
    payload = {"janus": "message", "transaction": "big", "body": {"request": "publish"}}
    data = json.dumps({**payload, "jsep": offer}).encode()
    assert len(data) > MAX_BODY
    status, answer = await post_raw(http, link.handle, data)
    assert status == 413
    assert answer == {
        "janus": "error",
        "error": {"code": 413, "reason": f"request body larger than {MAX_BODY} bytes"},
    }

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(data), 4096):
            yield data[start : start + 4096]

    status, answer = await post_raw(http, link.handle, chunked())
    assert (status, answer["error"]["code"]) == (413, 413)
    # the connection was closed, the proxy still serves
    await join_as_publisher(http, link, room)


async def test_a_body_that_is_not_json_gets_400(http: aiohttp.ClientSession, link: Link) -> None:
    status, answer = await post_raw(http, link.handle, b"janus=message&body=destroy")
    assert (status, answer) == (
        400,
        {"janus": "error", "error": {"code": 454, "reason": "request body is not JSON"}},
    )
    status, answer = await post_raw(http, link.handle, b'["janus", "message"]')
    assert (status, answer["error"]["code"]) == (400, 455)


# ---------------------------------------------------------------- many long polls


async def create_session(http: aiohttp.ClientSession, url: str) -> int:
    """A bare Janus session (no poll, no keepalive of its own)."""
    status, answer = await post(http, url, {"janus": "create"})
    assert (status, answer["janus"]) == (200, "success"), answer
    session: int = answer["data"]["id"]
    return session


def janus_client_connections(port: int) -> int:
    """Established TCP connections to `port` on 127.0.0.1 (the client ends), from /proc."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if remote == f"0100007F:{port:04X}" and state == "01":
            count += 1
    return count


async def test_long_polls_do_not_hold_up_a_keepalive(
    janus: LocalJanus, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = server_config(janus, tmp_path)
    async with (
        run_server(config) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as pages,
    ):
        proxy = f"{server.url}/janus"
        sessions = [await create_session(http, janus.http_url) for _ in range(POLLS)]
        before = janus_client_connections(janus.http_port)
        polls = [
            asyncio.create_task(get(pages, f"{proxy}/{session}", {"maxev": "1"}, seconds=60))
            for session in sessions
        ]
        try:
            # every poll is held by Janus on a connection of its own (none waits in a pool)
            await wait_until(lambda: janus_client_connections(janus.http_port) >= before + POLLS)
            started = asyncio.get_running_loop().time()
            status, answer = await post(pages, f"{proxy}/{sessions[0]}", {"janus": "keepalive"})
            elapsed = asyncio.get_running_loop().time() - started
            assert (status, answer["janus"]) == (200, "ack")
            assert elapsed < KEEPALIVE_BUDGET, f"keepalive took {elapsed:.2f} s"
            assert not any(poll.done() for poll in polls)  # all still held meanwhile
        finally:
            for session in sessions:
                await post(http, f"{janus.http_url}/{session}", {"janus": "destroy"})
            for poll in polls:
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
