"""Clients that guess, send garbage or come from someone else's page: each gets a clear
answer at once and changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cvh_camera.janus_local import LocalJanus
from cvh_camera.protocol import INVALID_TOKEN
from cvh_camera.server.config import PreactivatedSlot
from tests.integration.harness import TIMEOUT, Client, RunningServer, run_server, server_config

TOKEN = "right-token"
EIO = "/socket.io/?EIO=4&transport="


@pytest.fixture
async def server(janus_session_scope: LocalJanus, tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = server_config(janus_session_scope, tmp_path)
    config = server_config(
        janus_session_scope,
        tmp_path,
        room=config.port,
        failed_attempts=3,
        attempt_window=1,
        preactivated=(PreactivatedSlot(0, TOKEN),),
    )
    async with run_server(config) as running:
        yield running


async def test_attempt_limit_trips_and_resets(server: RunningServer) -> None:
    guesser = await Client().connect(server.url)
    try:
        for guess in ("a", "b", "c"):
            answer = await guesser.call("sender_init", {"slot": 0, "token": guess})
            assert answer == {"success": False, "message": INVALID_TOKEN}
        answer = await guesser.call("sender_init", {"slot": 0, "token": TOKEN})
        assert answer == {"success": False, "message": "Too many attempts, try again in 1 s"}
        other_socket = await Client().connect(server.url)  # same address, same limit
        answer = await other_socket.call("sender_init", {"slot": 0, "token": TOKEN})
        assert answer["message"].startswith("Too many attempts")
        await other_socket.close()
        async with asyncio.timeout(TIMEOUT):  # the window passes: the right token works again
            while (await guesser.call("sender_init", {"slot": 0, "token": TOKEN}))["message"] != (
                "Socket authenticated"
            ):
                await asyncio.sleep(0.1)
    finally:
        await guesser.close()


async def test_refusals_that_are_not_wrong_tokens_do_not_count(server: RunningServer) -> None:
    async with asyncio.timeout(TIMEOUT):
        client = await Client().connect(server.url)
        for _ in range(5):
            answer = await client.call("sender_init", {"slot": 2, "token": "x"})
            assert answer["message"] == (
                "This camera slot is not activated, contact your moderator"
            )
        assert (await client.call("sender_init", {"slot": 0, "token": TOKEN}))["success"]
        await client.close()


async def test_a_megabyte_token_is_answered_at_once(server: RunningServer) -> None:
    sender, receiver = await Client().connect(server.url), await Client().connect(server.url)
    try:
        huge = {"slot": 0, "token": "x" * 1_000_000}
        answer = await asyncio.wait_for(sender.call("sender_init", huge), TIMEOUT)
        assert answer == {"success": False, "message": INVALID_TOKEN}
        assert await receiver.call("query_state") == {}
    finally:
        await sender.close()
        await receiver.close()


async def _polling_session(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(f"{url}{EIO}polling") as answer:
        sid: str = json.loads((await answer.text())[1:])["sid"]
    return sid


@pytest.mark.parametrize("body", ["0", "2", "6", "x" * (3 << 20)], ids=["0", "2", "6", "3MB"])
async def test_every_polling_request_is_answered(
    server: RunningServer, http: aiohttp.ClientSession, body: str
) -> None:
    sid = await _polling_session(http, server.url)
    async with asyncio.timeout(TIMEOUT):
        async with http.post(f"{server.url}{EIO}polling&sid={sid}", data=body) as answer:
            assert answer.status == 400
        async with http.get(f"{server.url}/healthz") as health:
            assert (await health.json())["janus"]["state"] == "ready"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(None, True), ("own", True), ("http://evil.example", False)],
    ids=["no-origin", "own-origin", "foreign-origin"],
)
async def test_only_the_servers_own_pages_may_connect_from_a_browser(
    server: RunningServer, http: aiohttp.ClientSession, origin: str | None, allowed: bool
) -> None:
    headers = {} if origin is None else {"Origin": server.url if origin == "own" else origin}
    async with http.get(f"{server.url}{EIO}polling", headers=headers) as answer:
        assert (answer.status == 200) is allowed
        assert answer.headers.get("Access-Control-Allow-Credentials") is None
    try:
        ws = await http.ws_connect(f"{server.url}{EIO}websocket", headers=headers)
    except aiohttp.WSServerHandshakeError as error:
        assert not allowed and error.status == 400
    else:
        assert allowed
        assert (await ws.receive_str(timeout=TIMEOUT)).startswith("0{")
        await ws.close()
