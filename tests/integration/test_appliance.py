"""The appliance end to end: real Janus, real slot server, the appliance as its own process on
the synthetic camera (real H.264), and a real aiortc viewer decoding what it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from pathlib import Path

import aiohttp

from cvh_camera.janus_local import LocalJanus, find_free_port
from cvh_camera.server.config import PreactivatedSlot
from tests.integration.appliance_harness import (
    FPS,
    HEIGHT,
    STREAM_TIMEOUT,
    TOKEN,
    WIDTH,
    appliance,
    receiver,
    server,
)
from tests.integration.harness import (
    TIMEOUT,
    Client,
    RunningServer,
    run_server,
    server_config,
    wait_until,
)
from tests.integration.test_server import participants
from tests.support.counter import read_counter
from tests.support.viewer import FeedViewer

__all__ = ["receiver", "server"]  # fixtures


async def watch(http: aiohttp.ClientSession, server: RunningServer, feed_id: int) -> FeedViewer:
    viewer = FeedViewer(http, server.config.janus.url, server.config.janus.room)
    await viewer.watch(feed_id)
    return viewer


async def test_publishes_frames_a_viewer_decodes(
    server: RunningServer, receiver: Client, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with appliance(server, tmp_path):
        new_feed = await receiver.next("new_feed", STREAM_TIMEOUT)
        assert new_feed["slot"] == 0
        await server.wait_notify("custom_name 0 Lab camera")
        viewer = await watch(http, server, new_feed["feedId"])
        try:
            counters = []
            for _ in range(10):
                decoded = await viewer.next_frame(TIMEOUT)
                assert (decoded.frame.width, decoded.frame.height) == (WIDTH, HEIGHT)
                counters.append(read_counter(decoded.frame))
            # a frame decoded while a packet was still missing may hide its counter
            readable = [counter for counter in counters if counter is not None]
            assert len(readable) >= 8
            assert readable == sorted(readable) and readable[-1] > readable[0]
        finally:
            await viewer.close()


async def test_sigterm_frees_the_seat_for_the_next_appliance(
    server: RunningServer, receiver: Client, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    room = server.config.janus.room
    janus = server.config.janus
    async with appliance(server, tmp_path, "first") as first:
        feed = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        assert await first.stop(signal.SIGTERM) == 0
        assert await receiver.next("remove_feed") == {"slot": 0}
    assert await participants(http, janus.url, room) == []
    assert "appliance stopped" in first.log()
    async with appliance(server, tmp_path, "second"):
        assert (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"] != feed


async def test_kill_9_still_clears_the_feed(
    server: RunningServer, receiver: Client, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with appliance(server, tmp_path, "first") as first:
        await receiver.next("new_feed", STREAM_TIMEOUT)
        await first.stop(signal.SIGKILL)
        assert await receiver.next("remove_feed") == {"slot": 0}
    # the server kicked the dead publisher, so a new appliance gets the seat at once
    async with appliance(server, tmp_path, "second"):
        assert (await receiver.next("new_feed", STREAM_TIMEOUT))["slot"] == 0


async def test_republishes_after_janus_restart(
    janus: LocalJanus, server: RunningServer, receiver: Client, tmp_path: Path
) -> None:
    async with appliance(server, tmp_path) as running:
        first = await receiver.next("new_feed", STREAM_TIMEOUT)
        janus.restart()
        assert await receiver.next("remove_feed") == {"slot": 0}
        again = await receiver.next("new_feed", STREAM_TIMEOUT + 30)
        assert again["feedId"] != first["feedId"]
        assert running.process is not None and running.process.returncode is None


async def test_republishes_after_server_restart(janus: LocalJanus, tmp_path: Path) -> None:
    config = server_config(janus, tmp_path, preactivated=(PreactivatedSlot(0, TOKEN),))
    async with contextlib.AsyncExitStack() as outlives_the_server:
        async with run_server(config) as server:
            receiver = await Client().connect(server.url)
            await outlives_the_server.enter_async_context(appliance(server, tmp_path))
            first = await receiver.next("new_feed", STREAM_TIMEOUT)
            await receiver.close()
        # the server is gone; a new one comes up on the same port
        async with run_server(config) as server:
            receiver = await Client().connect(server.url)
            state = await receiver.call("query_state")
            feed = state["0"] if "0" in state else await receiver.next("new_feed", STREAM_TIMEOUT)
            assert feed["feedId"] != first["feedId"]
            await receiver.close()


async def test_wrong_token_is_logged_and_not_retried_fast(
    server: RunningServer, tmp_path: Path
) -> None:
    async with appliance(server, tmp_path, token="wrong-token-9999") as running:
        await wait_until(lambda: "next attempt in" in running.log(), STREAM_TIMEOUT)
        text = running.log()
        assert "Invalid token, contact your moderator" in text
        delay = float(re.search(r"next attempt in ([0-9.]+)s", text)[1])  # type: ignore[index]
        assert delay >= 20  # the longest backoff, not a tight loop
        assert "wrong-token-9999" not in text  # never logged in full


async def test_a_slot_activated_a_moment_later_streams_soon(
    janus: LocalJanus, tmp_path: Path
) -> None:
    config = server_config(janus, tmp_path, slots=2)  # nothing preactivated
    async with run_server(config) as server, appliance(server, tmp_path) as running:
        receiver = await Client().connect(server.url)
        try:
            await wait_until(lambda: "not activated" in running.log(), STREAM_TIMEOUT)
            await wait_until(lambda: "next attempt in" in running.log(), STREAM_TIMEOUT)
            delay = float(re.search(r"next attempt in ([0-9.]+)s", running.log())[1])  # type: ignore[index]
            assert delay < 5  # the normal backoff, not the longest delay of a wrong token
            server.command(f"activate_slot 0 {TOKEN}")
            assert (await receiver.next("new_feed", STREAM_TIMEOUT))["slot"] == 0
        finally:
            await receiver.close()


async def test_new_viewer_gets_a_keyframe_on_request(
    server: RunningServer, receiver: Client, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # periodic keyframes only every 40 s: a quick first picture needs the forwarded PLI
    async with appliance(server, tmp_path, keyframe_interval=600):
        feed = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        first = await watch(http, server, feed)
        try:
            for _ in range(3 * FPS):  # well past the stream's first keyframe
                await first.next_frame(TIMEOUT)
            second = await watch(http, server, feed)
            try:
                decoded = await second.next_frame(10)
                assert decoded.frame.width == WIDTH
            finally:
                await second.close()
        finally:
            await first.close()


async def test_controller_limit_and_janus_remb_reach_the_camera_encoder(
    server: RunningServer, receiver: Client, tmp_path: Path
) -> None:
    room_bitrate = server.config.janus.bitrate  # Janus caps publishers at it with REMB
    async with appliance(server, tmp_path) as running:
        await receiver.next("new_feed", STREAM_TIMEOUT)
        await wait_until(lambda: f"camera bitrate={room_bitrate} " in running.log())
        server.command("set_bitrate_limit 0 100000")
        # both paths arrive, in either order: Janus's REMB after the server's configure,
        # and the controller's limit over socket.io
        await wait_until(lambda: "controller bitrate limit=100000" in running.log())
        await wait_until(lambda: "camera bitrate=100000 (" in running.log())


async def test_status_page_and_file_follow_the_appliance(
    server: RunningServer, receiver: Client, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = find_free_port()
    status_file = tmp_path / "status.txt"
    async with appliance(
        server,
        tmp_path,
        status={"http_port": port, "http_host": "127.0.0.1", "file": str(status_file)},
    ):
        feed = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        await wait_until(lambda: status_file.exists() and "streaming" in status_file.read_text())
        async with http.get(f"http://127.0.0.1:{port}/") as resp:
            status = await resp.json()
        assert (status["state"], status["feed_id"], status["slot"]) == ("streaming", feed, 0)
        assert TOKEN not in status_file.read_text() and TOKEN not in str(status)


async def test_bad_yaml_exits_2_and_the_status_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "cvh-camera.yaml"
    config.write_text("server:\n  url: http://127.0.0.1:5000\nslot: 0\ntokn: abc\n")
    status_file = tmp_path / "cvh-camera-status.txt"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "appliance", "--config", str(config),
        "--status-file", str(status_file), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 2
    assert "tokn" in err.decode()
    text = status_file.read_text()
    assert text.startswith("CVH-Camera: bad configuration") and "tokn" in text


async def test_placeholders_say_not_configured_yet(tmp_path: Path) -> None:
    config = tmp_path / "cvh-camera.yaml"
    config.write_text('server:\n  url: ""\nslot: null\ntoken: ""\ncamera:\n  source: test\n')
    status_file = tmp_path / "cvh-camera-status.txt"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "appliance", "--config", str(config),
        "--status-file", str(status_file), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_until(lambda: status_file.exists())
        assert "not configured yet: set server.url, slot, token" in status_file.read_text()
        assert process.returncode is None  # it waits, readable, instead of failing
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
