"""The running appliance: camera source, supervisor, status reporting and systemd watchdog,
with one lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cvh_camera.appliance.config import ApplianceConfig
from cvh_camera.appliance.sdnotify import SystemdNotifier
from cvh_camera.appliance.sources import create_source
from cvh_camera.appliance.sources.base import VideoSource
from cvh_camera.appliance.status import StatusReporter, status_http
from cvh_camera.appliance.supervisor import State, Status, Supervisor
from cvh_camera.tasks import stop_tasks

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0


def facts(config: ApplianceConfig) -> dict[str, Any]:
    """What the status shows besides the state (nothing secret)."""
    camera = config.camera
    return {
        "slot": config.slot if config.slot is not None else "not set",
        "server": config.server.url,
        "camera": f"{camera.source} {camera.width}x{camera.height} {camera.fps} fps",
    }


def camera_source(config: ApplianceConfig) -> VideoSource:
    """The camera source the configuration names (not started)."""
    camera = config.camera
    return create_source(
        camera.source,
        width=camera.width,
        height=camera.height,
        fps=camera.fps,
        bitrate=camera.bitrate,
        keyframe_interval=camera.keyframe_interval,
        file=Path(camera.file) if camera.file else None,
    )


@contextlib.asynccontextmanager
async def running_appliance(
    config: ApplianceConfig,
    *,
    notifier: SystemdNotifier | None = None,
    reporter: StatusReporter | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """Start the appliance; yields the supervisor's task (it ends only by failing).
    Leaving the block leaves Janus, destroys the session and stops the camera."""
    notifier = notifier or SystemdNotifier()
    status_file = Path(config.status.file) if config.status.file else None
    reporter = reporter or StatusReporter(status_file, facts(config))
    source = camera_source(config)

    def report(status: Status) -> None:
        reporter.update(status)
        text = f"{status.state.value}: {status.detail}" if status.detail else status.state.value
        if status.state is not State.STARTING:
            notifier.ready(text)  # READY once running; a repeated READY=1 is harmless

    supervisor = Supervisor(config, source, status_sink=report)
    async with status_http(reporter, config.status.http_host, config.status.http_port):
        tasks = [
            asyncio.create_task(supervisor.run(), name="supervisor"),
            asyncio.create_task(notifier.watchdog(), name="watchdog"),
        ]
        try:
            yield tasks[0]
        finally:
            notifier.stopping()
            if not await stop_tasks(tasks, STOP_TIMEOUT):
                log.error("appliance did not stop within %.0fs", STOP_TIMEOUT)
            log.info("appliance stopped")
