"""`cvh-camera demo`, the README's main command: it comes up, serves, and stops cleanly."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import aiohttp

from tests.integration.harness import TIMEOUT, Client


async def test_demo_starts_serves_and_stops(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "demo", "--port", "0", "--workdir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            while b"demo is running" not in (line := await process.stdout.readline()):
                assert line, "demo exited before it was running"
            text = (await process.stdout.readuntil(b"notify lines")).decode()
        url = re.search(r"slot server\s+(http://\S+)", text)
        assert url, text
        async with aiohttp.ClientSession() as http, http.get(f"{url[1]}/healthz") as resp:
            health = await resp.json()
        assert health["janus"]["state"] == "ready" and health["activated"] == [0, 1]
        async with aiohttp.ClientSession() as http, http.get(url[1] + "/") as resp:
            assert resp.status == 200 and "receiver.js" in await resp.text()
        receiver = await Client().connect(url[1])
        state = await receiver.call("query_state")  # the demo's camera publishes by itself
        feed = state["0"] if "0" in state else await receiver.next("new_feed", 30)
        assert feed["feedId"]
        token = (tmp_path / "slot0.token").read_text().strip()
        assert token not in text
        process.send_signal(signal.SIGTERM)
        assert await receiver.next("remove_all_feeds") is None
        await receiver.close()
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
