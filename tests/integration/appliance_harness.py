"""The appliance as its own process, with the slot server and receiver it talks to."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cvh_camera.janus_local import LocalJanus
from cvh_camera.server.config import PreactivatedSlot
from tests.integration.harness import TIMEOUT, Client, RunningServer, run_server, server_config

TOKEN = "appliance-token-1234"
WIDTH, HEIGHT, FPS = 640, 360, 15
STREAM_TIMEOUT = 30.0


class ApplianceProcess:
    """`cvh-camera appliance --config …` as systemd would run it; its log is kept."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> ApplianceProcess:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cvh_camera", "appliance", "--config", str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return await asyncio.wait_for(self.process.wait(), TIMEOUT)
        except TimeoutError:
            self.process.send_signal(signal.SIGUSR2)  # its tasks' stacks go to the log
            self.process.send_signal(signal.SIGUSR1)  # and its threads'
            await asyncio.sleep(0.5)
            raise


def write_appliance_config(path: Path, server: RunningServer, **camera: Any) -> Path:
    janus = server.config.janus
    config = {
        "server": {"url": server.url},
        "slot": 0,
        "token": camera.pop("token", TOKEN),
        "status": camera.pop("status", {"http_port": 0}),
        "name": "Lab camera",
        "janus": {"url": janus.url, "room": janus.room},
        "camera": {"source": "test", "width": WIDTH, "height": HEIGHT, "fps": FPS,
                   "bitrate": 600_000, "keyframe_interval": FPS * 2, **camera},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def appliance(
    server: RunningServer, tmp_path: Path, name: str = "appliance", **camera: Any
) -> AsyncIterator[ApplianceProcess]:
    config = write_appliance_config(tmp_path / f"{name}.yaml", server, **camera)
    running = await ApplianceProcess(config, tmp_path / f"{name}.log").start()
    try:
        yield running
    finally:
        if running.process is not None and running.process.returncode is None:
            running.process.kill()
            await running.process.wait()


@pytest.fixture
async def server(janus: LocalJanus, tmp_path: Path) -> AsyncIterator[RunningServer]:
    config = server_config(janus, tmp_path, preactivated=(PreactivatedSlot(0, TOKEN),), slots=2)
    async with run_server(config) as running:
        yield running


@pytest.fixture
async def receiver(server: RunningServer) -> AsyncIterator[Client]:
    client = await Client().connect(server.url)
    yield client
    await client.close()
