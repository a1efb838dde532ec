"""The appliance supervisor: authenticate, publish, report, and start again when anything breaks.

One attempt starts the camera if it is not running, then runs the chain slot server →
`sender_init` → Janus publish → `set_feed_id`, and streams until the server connection, the
Janus session or the peer connection ends, or the camera fails. A camera that fails (at
start or while streaming) is stopped, reported as `camera failed` with its error, and
started again by the next attempt: a camera that comes back streams again by itself.
Between attempts: capped exponential backoff with jitter, reset once streaming; a refusal
that needs a person (a wrong token) waits the longest delay; a slot not activated yet is
retried on the normal backoff. Every state change goes to the injected status sink (log,
systemd, status file).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from cvh_camera.appliance.bitrate import BitrateGovernor
from cvh_camera.appliance.config import ApplianceConfig
from cvh_camera.appliance.publisher import JanusPublisher, PublishTarget
from cvh_camera.appliance.slot_client import ServerUnreachable, SlotClient, SlotRejected
from cvh_camera.appliance.sources.base import SourceError, VideoSource
from cvh_camera.backoff import Backoff
from cvh_camera.janus import JanusError, JanusUnavailable

log = logging.getLogger(__name__)


class State(enum.Enum):
    NOT_CONFIGURED = "not configured"
    STARTING = "starting"
    CONNECTING = "connecting to the slot server"
    PUBLISHING = "publishing to Janus"
    STREAMING = "streaming"
    RETRYING = "waiting to retry"
    REJECTED = "rejected by the slot server"
    CAMERA_FAILED = "camera failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Status:
    state: State
    detail: str = ""
    since: float = field(default_factory=time.time)  # wall clock, for people
    feed_id: int | None = None


StatusSink = Callable[[Status], None]
_TRANSIENT = (ServerUnreachable, JanusUnavailable, JanusError, aiohttp.ClientError, TimeoutError)


class Supervisor:
    def __init__(
        self,
        config: ApplianceConfig,
        source: VideoSource,
        *,
        status_sink: StatusSink,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._source = source
        self._sink = status_sink
        self._backoff = backoff or Backoff(initial=1.0, maximum=30.0)
        self._sleep = sleep
        self._bitrate = BitrateGovernor(config.camera.bitrate, source.set_bitrate)
        self.status = Status(State.STARTING)
        self._camera_running = False

    async def run(self) -> None:
        """Run until cancelled; cleans up (leaves the room, stops the camera) on the way out."""
        if not self._config.configured:
            missing = ", ".join(self._config.missing())
            self._set(State.NOT_CONFIGURED, f"not configured yet: set {missing}")
            await asyncio.Event().wait()  # idle: status stays readable until stopped
        try:
            async with aiohttp.ClientSession() as http:
                while True:
                    delay = await self._attempt(http)
                    log.info("next attempt in %.1fs", delay)
                    await self._sleep(delay)
        finally:
            await self._source.stop()
            self._set(State.STOPPED)

    async def _attempt(self, http: aiohttp.ClientSession) -> float:
        """One chain from connecting to the end of streaming; returns the delay before the next."""
        config = self._config
        client = SlotClient(
            config.server.url,
            config.server.socketio_path,
            on_controller_limit=self._bitrate.controller,
        )
        publisher: JanusPublisher | None = None
        try:
            await self._start_camera()
            self._set(State.CONNECTING, config.server.url)
            await client.connect()
            await client.authenticate(_slot(config), config.token)
            self._set(State.PUBLISHING, config.janus_url)
            publisher = JanusPublisher(
                http, self._target(), self._source, on_bitrate_estimate=self._bitrate.estimate
            )
            feed = await publisher.publish()
            self._bitrate.controller(await client.report_feed(feed, config.name))
            self._set(State.STREAMING, f"feed {feed.feed_id}", feed.feed_id)
            self._backoff.reset()
            reason = await _first(publisher.wait_lost(), client.wait_disconnected())
            self._set(State.RETRYING, reason)
            return self._backoff.next_delay()
        except SlotRejected as refusal:
            if refusal.needs_a_person:
                self._set(State.REJECTED, refusal.message)
                log.error("slot server refused slot=%s: %s", config.slot, refusal.message)
                return self._backoff.longest()
            self._set(State.RETRYING, refusal.message)
        except SourceError as error:
            self._set(State.CAMERA_FAILED, str(error))
            log.error("camera failed: %s", error)
            await self._stop_camera()
        except _TRANSIENT as error:
            self._set(State.RETRYING, f"{type(error).__name__}: {error}")
        except Exception as error:  # the one broad catch of this loop: log, back off, retry
            log.exception("attempt failed")
            self._set(State.RETRYING, f"unexpected: {error}")
        finally:
            if publisher is not None:
                await publisher.close()
            await client.close()
        return self._backoff.next_delay()

    async def _start_camera(self) -> None:
        if not self._camera_running:
            await self._source.start()
            self._camera_running = True

    async def _stop_camera(self) -> None:
        self._camera_running = False
        await self._source.stop()

    def _target(self) -> PublishTarget:
        janus = self._config.janus
        display = self._config.name or f"slot {self._config.slot}"
        return PublishTarget(
            self._config.janus_url, janus.room, janus.pin, display, janus.ice_servers
        )

    def _set(self, state: State, detail: str = "", feed_id: int | None = None) -> None:
        if (state, detail) == (self.status.state, self.status.detail):
            return
        self.status = Status(state, detail, feed_id=feed_id)
        log.info("state=%s %s", state.value, detail)
        self._sink(self.status)


def _slot(config: ApplianceConfig) -> int:
    if config.slot is None:
        raise SlotRejected("no slot configured")
    return config.slot


async def _first(*waits: Awaitable[str]) -> str:
    """The result of whichever wait finishes first; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
