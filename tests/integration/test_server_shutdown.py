"""SIGTERM ends `cvh-camera server` within its grace period plus one second, whatever the
clients did: a polling handshake never continued, a long poll held open, a websocket
upgrade left half way, a client whose network went dead (a stopped process keeps its TCP
connection open and reads nothing). Those who can hear still get `remove_all_feeds`, and the
Janus room is destroyed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from cvh_camera.janus_local import LocalJanus, find_free_port
from cvh_camera.server.app import SHUTDOWN_GRACE
from tests.integration.harness import TIMEOUT, Client
from tests.integration.test_server import room_exists
from tests.integration.test_server_legacy import wait_ready

EXIT_WITHIN = SHUTDOWN_GRACE + 1.0
SLACK = 1.0  # process start-up of the signal's delivery on a loaded CI machine
EIO = "/socket.io/?EIO=4&transport="

Trouble = Callable[[str, aiohttp.ClientSession, contextlib.AsyncExitStack], Awaitable[None]]


@contextlib.asynccontextmanager
async def server_process(
    janus: LocalJanus, tmp_path: Path, room: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = find_free_port()
    config = tmp_path / "server.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "controller": {"stdin": False},
                "janus": {"url": janus.http_url, "room": room, "admin_key": janus.admin_key},
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "server", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url)
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def abandoned_handshake(url: str, http: aiohttp.ClientSession, _: object) -> None:
    async with http.get(f"{url}{EIO}polling") as answer:
        assert (await answer.text()).startswith("0{")


async def _open_polling(url: str, http: aiohttp.ClientSession) -> str:
    async with http.get(f"{url}{EIO}polling") as answer:
        sid: str = json.loads((await answer.text())[1:])["sid"]
    async with http.post(f"{url}{EIO}polling&sid={sid}", data="40") as answer:
        assert answer.status == 200
    async with http.get(f"{url}{EIO}polling&sid={sid}") as answer:
        assert (await answer.text()).startswith("40")
    return sid


async def held_long_poll(
    url: str, http: aiohttp.ClientSession, stack: contextlib.AsyncExitStack
) -> None:
    sid = await _open_polling(url, http)
    poll = asyncio.create_task(http.get(f"{url}{EIO}polling&sid={sid}"))
    stack.push_async_callback(_cancel, poll)


async def half_upgrade(
    url: str, http: aiohttp.ClientSession, stack: contextlib.AsyncExitStack
) -> None:
    sid = await _open_polling(url, http)
    ws = await http.ws_connect(f"{url}{EIO}websocket&sid={sid}")
    stack.push_async_callback(ws.close)
    await ws.send_str("2probe")
    assert await ws.receive_str(timeout=TIMEOUT) == "3probe"  # and no UPGRADE ever follows


STOPPED_CLIENT = textwrap.dedent(
    """
    import asyncio, sys, socketio
    async def main():
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(sys.argv[1], transports=["websocket"])
        print("connected", flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
    """
)


async def dead_network(
    url: str, http: aiohttp.ClientSession, stack: contextlib.AsyncExitStack
) -> None:
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STOPPED_CLIENT, url, stdout=asyncio.subprocess.PIPE
    )
    stack.push_async_callback(_kill, client)
    assert client.stdout is not None
    assert await asyncio.wait_for(client.stdout.readline(), TIMEOUT) == b"connected\n"
    client.send_signal(signal.SIGSTOP)  # its socket stays open; nothing reads or answers


async def _cancel(task: asyncio.Task[object]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
        await task


async def _kill(process: asyncio.subprocess.Process) -> None:
    process.kill()
    process.send_signal(signal.SIGCONT)
    await process.wait()


@pytest.mark.parametrize(
    "trouble",
    [abandoned_handshake, held_long_poll, half_upgrade, dead_network],
    ids=lambda trouble: trouble.__name__,
)
async def test_sigterm_ends_the_server_in_time(
    trouble: Trouble, janus_session_scope: LocalJanus, tmp_path: Path
) -> None:
    room = find_free_port()
    async with (
        server_process(janus_session_scope, tmp_path, room) as (process, url),
        aiohttp.ClientSession() as http,
        contextlib.AsyncExitStack() as stack,
    ):
        listener = await Client().connect(url)
        await trouble(url, http, stack)
        process.send_signal(signal.SIGTERM)
        assert await listener.next("remove_all_feeds") is None
        assert await asyncio.wait_for(process.wait(), EXIT_WITHIN + SLACK) == 0
        await listener.close()
        assert not await room_exists(http, janus_session_scope, room)
