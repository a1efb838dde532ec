"""A camera that goes away and comes back: the supervisor in-process against a real Janus and
slot server, on the synthetic camera behind a plug (the hardware edge is the only fake).
The status says `camera failed` with the camera's error, receivers lose the feed, and once
the camera is back the appliance streams again by itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from cvh_camera.appliance.config import ApplianceConfig, parse_appliance_config
from cvh_camera.appliance.sources.base import AccessUnit, SourceError, SourceStats
from cvh_camera.appliance.sources.synthetic import SyntheticSource
from cvh_camera.appliance.status import StatusReporter
from cvh_camera.appliance.supervisor import State, Status, Supervisor
from cvh_camera.backoff import Backoff
from tests.integration.appliance_harness import (
    FPS,
    HEIGHT,
    STREAM_TIMEOUT,
    TOKEN,
    WIDTH,
    receiver,
    server,
)
from tests.integration.harness import Client, RunningServer

__all__ = ["receiver", "server"]  # fixtures

UNPLUGGED = "the camera delivered no frame for 5 s"


class PluggableCamera:
    """The synthetic camera behind a cable that the test pulls and plugs back in."""

    def __init__(self, plugged: bool = True) -> None:
        self._camera = SyntheticSource(width=WIDTH, height=HEIGHT, fps=FPS, bitrate=400_000,
                                       keyframe_interval=FPS)  # fmt: skip
        self.name, self.width, self.height, self.fps = "pluggable", WIDTH, HEIGHT, FPS
        self.plugged = plugged
        self.starts = 0

    async def start(self) -> None:
        if not self.plugged:
            raise SourceError("cannot start the camera: no camera found")
        await self._camera.start()
        self.starts += 1

    async def stop(self) -> None:
        await self._camera.stop()

    async def next_unit(self) -> AccessUnit:
        try:
            return await self._camera.next_unit()
        except SourceError:
            if self.plugged:
                raise
            raise SourceError(UNPLUGGED) from None

    async def unplug(self) -> None:
        self.plugged = False
        await self._camera.stop()  # the frames stop: next_unit() raises

    def request_keyframe(self) -> None:
        self._camera.request_keyframe()

    def set_bitrate(self, bits_per_second: int) -> None:
        self._camera.set_bitrate(bits_per_second)

    @property
    def stats(self) -> SourceStats:
        return self._camera.stats


class StatusLog:
    """The status sink: the file a person reads, and an event per state for the test."""

    def __init__(self, path: Path) -> None:
        self.reporter = StatusReporter(path, {"slot": 0})
        self.path = path
        self._seen: dict[State, asyncio.Event] = {state: asyncio.Event() for state in State}
        self.history: list[Status] = []

    def __call__(self, status: Status) -> None:
        self.reporter.update(status)
        self.history.append(status)
        self._seen[status.state].set()

    async def reached(self, state: State, timeout: float = STREAM_TIMEOUT) -> Status:
        self._seen[state].clear()
        if self.history and self.history[-1].state is state:
            return self.history[-1]
        await asyncio.wait_for(self._seen[state].wait(), timeout)
        return self.history[-1]


def config(server: RunningServer) -> ApplianceConfig:
    janus = server.config.janus
    data = {
        "server": {"url": server.url}, "slot": 0, "token": TOKEN, "name": "Unplugged",
        "status": {"http_port": 0}, "janus": {"url": janus.url, "room": janus.room},
        "camera": {"source": "test", "width": WIDTH, "height": HEIGHT, "fps": FPS},
    }  # fmt: skip
    return parse_appliance_config(data, "test", Path("."), {})


@contextlib.asynccontextmanager
async def supervising(
    server: RunningServer, camera: PluggableCamera, status: StatusLog
) -> AsyncIterator[Supervisor]:
    supervisor = Supervisor(config(server), camera, status_sink=status,
                            backoff=Backoff(initial=0.2, maximum=1.0))  # fmt: skip
    task = asyncio.create_task(supervisor.run(), name="supervisor")
    try:
        yield supervisor
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_camera_that_stops_is_reported_and_streams_again_once_back(
    server: RunningServer, receiver: Client, tmp_path: Path
) -> None:
    camera, status = PluggableCamera(), StatusLog(tmp_path / "status.txt")
    async with supervising(server, camera, status):
        first = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        await status.reached(State.STREAMING)

        await camera.unplug()
        failed = await status.reached(State.CAMERA_FAILED)
        assert failed.detail == UNPLUGGED
        assert await receiver.next("remove_feed") == {"slot": 0}
        text = status.path.read_text()
        assert "camera failed" in text and UNPLUGGED in text, text

        camera.plugged = True
        again = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        await status.reached(State.STREAMING)
        assert again != first and camera.starts == 2


async def test_no_camera_at_start_is_reported_and_retried_until_it_is_there(
    server: RunningServer, receiver: Client, tmp_path: Path
) -> None:
    camera, status = PluggableCamera(plugged=False), StatusLog(tmp_path / "status.txt")
    async with supervising(server, camera, status):
        failed = await status.reached(State.CAMERA_FAILED)
        assert "no camera found" in failed.detail
        assert "no camera found" in status.path.read_text()
        assert receiver.pending("new_feed") == 0

        camera.plugged = True
        await receiver.next("new_feed", STREAM_TIMEOUT)
        await status.reached(State.STREAMING)
        assert camera.starts == 1
