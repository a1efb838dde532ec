"""Status without a screen: the appliance's state and last error, for a person holding the SD card.

`StatusReporter` keeps the current state and the last error. On every state change it
rewrites a small text file (on the Pi: the boot partition, readable on any computer) and
it answers `GET /` on a local HTTP port with the same as JSON. Nothing secret goes in.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from cvh_camera.appliance.supervisor import State, Status

log = logging.getLogger(__name__)

_ERROR_STATES = (State.RETRYING, State.REJECTED, State.CAMERA_FAILED, State.NOT_CONFIGURED)


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class StatusReporter:
    def __init__(self, path: Path | None, facts: dict[str, Any] | None = None) -> None:
        self._path = path
        self._facts = facts or {}  # fixed context: slot, server, camera (never the token)
        self.status = Status(State.STARTING)
        self.last_error = ""
        self.last_error_at: float | None = None

    def update(self, status: Status) -> None:
        self.status = status
        if status.state in _ERROR_STATES and status.detail:
            self.last_error, self.last_error_at = status.detail, status.since
        self._write(self.text())

    def bad_configuration(self, problems: Iterable[str]) -> None:
        """The configuration could not be loaded: say which keys, in the file."""
        listed = list(problems)
        self.status = Status(State.STOPPED, "bad configuration")
        self.last_error = "; ".join(listed)
        lines = ["CVH-Camera: bad configuration — fix these and restart:", *listed]
        self._write("\n".join(lines) + "\n")

    def snapshot(self) -> dict[str, Any]:
        status = self.status
        return {
            "state": status.state.value,
            "detail": status.detail,
            "since": _when(status.since),
            "feed_id": status.feed_id,
            "last_error": self.last_error,
            "last_error_at": _when(self.last_error_at) if self.last_error_at else None,
            **self._facts,
        }

    def text(self) -> str:
        status = self.status
        headline = f"CVH-Camera: {status.state.value}"
        if status.detail:
            headline += f" — {status.detail}"
        lines = [headline, f"since: {_when(status.since)}"]
        if self.last_error:
            lines.append(f"last error: {self.last_error} ({_when(self.last_error_at or 0)})")
        lines += [f"{key}: {value}" for key, value in self._facts.items()]
        return "\n".join(lines) + "\n"

    def _write(self, text: str) -> None:
        """Replace the file in one step and flush it: the card may lose power at any time."""
        if self._path is None:
            return
        temporary = self._path.with_name(self._path.name + ".new")
        try:
            with temporary.open("w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self._path)
        except OSError as error:
            log.warning("status file %s not written: %s", self._path, error)


@contextlib.asynccontextmanager
async def status_http(reporter: StatusReporter, host: str, port: int) -> AsyncIterator[None]:
    """Serve the status as JSON on `host:port` (port 0: not at all) for the block's lifetime."""
    if port == 0:
        yield
        return

    async def show(request: web.Request) -> web.Response:
        return web.json_response(reporter.snapshot())

    app = web.Application()
    app.router.add_get("/", show)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("status page on http://%s:%d/", host, port)
    except OSError as error:
        log.warning("status page not served on %s:%d: %s", host, port, error)
    try:
        yield
    finally:
        await runner.cleanup()
