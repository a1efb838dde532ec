"""`cvh-camera server` spawned the way PULT / Neopult spawn the Node.js server: legacy
CONFIG_PATH JSON + environment, commands on stdin, a notify FIFO, SIGTERM to stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cvh_camera.janus_local import LocalJanus, find_free_port
from tests.integration.harness import TIMEOUT, Client, clients, wait_until
from tests.integration.test_server import joined_feeds, room_exists


class FifoReader:
    """Reads notify lines from a FIFO without blocking, as a controller would."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.buffer = b""

    def lines(self) -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.fd, 4096):
                self.buffer += chunk
        return self.buffer.decode().splitlines()

    async def wait_for(self, line: str) -> None:
        await wait_until(lambda: line in self.lines())


@contextlib.asynccontextmanager
async def legacy_server(
    janus: LocalJanus, tmp_path: Path, room: int
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, FifoReader]]:
    port = find_free_port()
    config_path = tmp_path / "config.json"
    config_path.write_text(
        json.dumps(
            {
                "port": 1,  # overridden by the environment below
                "cameraSlots": 4,
                "notifyPath": "notify.fifo",  # relative to the config file
                "janusURL": janus.http_url,
                "janusRoom": room,
                "janusRoomSecret": "s3cret",
                "janusAdminKey": janus.admin_key,
                "unknownKey": True,  # reported and ignored
            }
        )
    )
    fifo = FifoReader(tmp_path / "notify.fifo")
    env = {**os.environ, "CONFIG_PATH": str(config_path), "CVH_CAMERA_CONFIG_port": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "server",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url)
        yield process, url, fifo
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(fifo.fd)


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(TIMEOUT):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/healthz") as resp:
                    if (await resp.json())["janus"]["state"] == "ready":
                        return
            await asyncio.sleep(0.05)


def send(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line.encode() + b"\n")


async def test_legacy_spawn_stdin_notify_and_sigterm(
    janus_session_scope: LocalJanus, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    room = find_free_port()
    async with legacy_server(janus_session_scope, tmp_path, room) as (process, url, fifo):
        assert await room_exists(http, janus_session_scope, room)
        send(process, "activate_slot 0 legacy-token")
        send(process, "this is not a command")
        receiver = await Client().connect(url)
        feeds = joined_feeds(janus_session_scope.http_url, room)
        async with clients(url) as (sender,), feeds as (feed,):
            async with asyncio.timeout(TIMEOUT):
                while not (
                    await sender.call("sender_init", {"slot": "0", "token": "legacy-token"})
                )["success"]:
                    await asyncio.sleep(0.05)  # stdin is read asynchronously
            assert (await sender.call("set_feed_id", {**feed, "customName": "<Lab>"}))["success"]
            assert (await receiver.next("new_feed"))["slot"] == 0
            await fifo.wait_for("new_feed 0")
            await fifo.wait_for("custom_name 0 &lt;Lab&gt;")
            send(process, "set_bitrate_limit 0 256000")
            assert await sender.next("new_controller_bitrate_limit") == {"bitrateLimit": 256000}
        assert await receiver.next("remove_feed") == {"slot": 0}
        await fifo.wait_for("remove_feed 0")

        process.send_signal(signal.SIGTERM)
        assert await receiver.next("remove_all_feeds") is None
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
        await receiver.close()
        assert not await room_exists(http, janus_session_scope, room)
        assert process.stdout is not None
        log = (await process.stdout.read()).decode()
        assert "legacy-token" not in log  # tokens never appear in full
        assert "unknownKey" in log


async def test_config_error_exits_2_naming_file_key_and_value(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("janus:\n  room: many\nlisten:\n  prot: 5000\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "server", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 2
    text = err.decode()
    assert "server.yaml" in text and "janus.room" in text and "many" in text
    assert "listen.prot" in text and "did you mean 'port'" in text


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
async def test_server_stops_cleanly_on_signals(
    janus_session_scope: LocalJanus, tmp_path: Path, signal_number: int
) -> None:
    async with legacy_server(janus_session_scope, tmp_path, find_free_port()) as (process, _, _):
        process.send_signal(signal_number)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
