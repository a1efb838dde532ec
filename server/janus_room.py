"""The slot server's Janus VideoRoom (docs/protocol.md): create, keep, re-create, destroy.

`JanusRoom` owns a supervisor task: connect a session, attach the VideoRoom plugin, replace
any old room with ours, then wait until the session is lost or the room vanishes (destroyed
behind our back: Janus answers 426 to a request for it). On either it tells the service (the
feeds died with the room) and starts again: at once when only the room vanished, with capped
backoff when Janus went away, while socket.io goes on serving. Each room it creates gets
the next `generation`. Bitrate, pin changes and kicks are queued and sent by a worker task
the room also owns; `participants()` and `kick()` are awaited by the seat guard
(`server.seats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from cvh_camera.backoff import Backoff
from cvh_camera.h264_profile import PROFILE_LEVEL_ID
from cvh_camera.janus import (
    JanusError,
    JanusHandle,
    JanusSession,
    JanusUnavailable,
    send_plugin_message,
)
from cvh_camera.secrets import mask
from cvh_camera.server.config import JanusSettings
from cvh_camera.tasks import stop_tasks

log = logging.getLogger(__name__)

NO_SUCH_ROOM = 426
NO_SUCH_FEED = 428
VIDEO_CODECS = "h264,vp8"  # H.264 first: the appliance sends the camera's hardware H.264
# What a request to Janus may fail with besides RoomUnavailable (server.cascade catches these too).
FAILURES = (JanusError, JanusUnavailable, aiohttp.ClientError, TimeoutError)


class RoomUnavailable(Exception):
    """The room cannot answer now: Janus is away, the room is being (re-)created or vanished."""

    def __init__(self, reason: str, code: int = 0) -> None:
        super().__init__(reason)
        self.code = code  # Janus's error code when Janus answered with one


@dataclass(frozen=True)
class Participant:
    """One entry of VideoRoom `listparticipants`: a handle that joined as publisher."""

    id: int | str
    display: str
    publishing: bool  # Janus's `publisher`: media is up; false = joined, not (yet) publishing
    remote: bool = False  # a remote publisher (fed by another Janus: server.cascade)


@dataclass(frozen=True)
class Roster:
    """The room's participants, as one creation (`generation`) of the room listed them."""

    generation: int
    participants: tuple[Participant, ...]

    def ids(self) -> set[int | str]:
        return {p.id for p in self.participants}


class RoomState(enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    DOWN = "down"
    CLOSED = "closed"


@dataclass(frozen=True)
class _Bitrate:
    slot: int
    session_id: int
    handle_id: int
    bitrate: int


@dataclass(frozen=True)
class _EditPin:
    pin: str


@dataclass(frozen=True)
class _Kick:
    feed_id: int | str


class JanusRoom:
    def __init__(
        self,
        settings: JanusSettings,
        publishers: int,
        *,
        on_lost: Callable[[], None],
        backoff: Backoff | None = None,
        request_timeout: float = 10.0,
        check_timeout: float = 3.0,
    ) -> None:
        if not settings.secret:  # nobody but this process needs to know it
            settings = dataclasses.replace(settings, secret=secrets.token_urlsafe(24))
        self._settings = settings
        self._publishers = publishers
        self._on_lost = on_lost
        self._backoff = backoff or Backoff(initial=0.5, maximum=10.0)
        self._timeout = request_timeout
        self._check_timeout = check_timeout  # participants and kicks: answered within ms
        self._pin = settings.pin
        self.state = RoomState.CONNECTING
        self.last_error = ""
        self.generation = 0  # how many times this process created the room
        self._ready = asyncio.Event()
        self._vanished = asyncio.Event()
        self._requests: asyncio.Queue[_Bitrate | _EditPin | _Kick] = asyncio.Queue()
        self._http: aiohttp.ClientSession | None = None
        self._session: JanusSession | None = None
        self._handle: JanusHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._tasks = [
            asyncio.create_task(self._supervise(), name="janus-room"),
            asyncio.create_task(self._work(), name="janus-room-requests"),
        ]

    async def close(self) -> None:
        """Destroy the room and the session; stop the tasks. Idempotent, never hangs."""
        if self.state is RoomState.CLOSED:
            return
        self.state = RoomState.CLOSED
        await stop_tasks(self._tasks, self._timeout)
        if self._handle is not None and self._session is not None and not self._session.lost:
            try:
                await self._destroy_room(self._handle)
            except FAILURES as error:
                log.warning(
                    "janus room destroy failed room=%d error=%s", self._settings.room, error
                )
        await self._drop_session()
        if self._http is not None:
            await self._http.close()
        log.info("janus room closed room=%d", self._settings.room)

    async def wait_ready(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "room": self._settings.room,
            "error": self.last_error,
            "generation": self.generation,
        }

    # ------------------------------------------------------- service requests

    def apply_bitrate(self, slot: int, session_id: int, handle_id: int, bitrate: int) -> None:
        self._requests.put_nowait(_Bitrate(slot, session_id, handle_id, bitrate))

    def edit_pin(self, pin: str) -> None:
        self._pin = pin  # a re-created room gets it too
        self._requests.put_nowait(_EditPin(pin))

    def kick_publisher(self, feed_id: int | str) -> None:
        self._requests.put_nowait(_Kick(feed_id))

    # ------------------------------------------------------------ seat guard

    async def participants(self) -> Roster:
        """VideoRoom `listparticipants` on our own handle, within the check timeout."""
        handle, generation = self._ready_handle(), self.generation
        body = {"request": "listparticipants", "room": self._settings.room}
        data = await self._check(handle, body)
        entries = data.get("participants")
        found = [_participant(entry) for entry in entries] if isinstance(entries, list) else []
        return Roster(generation, tuple(p for p in found if p is not None))

    async def kick(self, feed_id: int | str) -> None:
        """Kick a publisher now, with the room secret; one that already left is fine."""
        await self._kick_on(self._ready_handle(), feed_id)

    # --------------------------------------------------------------- cascade

    async def room_request(self, body: dict[str, Any]) -> dict[str, Any]:
        """A VideoRoom request about our room on our handle, with the room's secret and
        admin key added (the remote-publisher requests of `server.cascade`)."""
        full = {**body, "room": self._settings.room, "secret": self._settings.secret}
        if self._settings.admin_key:
            full["admin_key"] = self._settings.admin_key
        return await self._check(self._ready_handle(), full)

    async def feed_streams(self, feed_id: int | str) -> list[dict[str, Any]]:
        """A publisher's streams (type, codec, its mid), as a new subscriber is offered
        them: a handle of our session joins as its subscriber, reads the offer's summary
        and detaches without answering it (nothing flows)."""
        handle = await self._ready_handle().session.attach("janus.plugin.videoroom")
        try:
            join = {"request": "join", "ptype": "subscriber", "room": self._settings.room,
                    "streams": [{"feed": feed_id}]}  # fmt: skip
            if self._pin:
                join["pin"] = self._pin
            try:
                data, _ = await handle.message(join, timeout=self._check_timeout)
            except JanusError as error:
                raise RoomUnavailable(f"join as subscriber: {error}", error.code) from error
        finally:
            with contextlib.suppress(*FAILURES):
                await handle.detach()
        streams = data.get("streams")
        if not isinstance(streams, list):
            raise RoomUnavailable(f"the offer for feed {feed_id} lists no streams")
        return [s for s in streams if isinstance(s, dict)]

    # ------------------------------------------------------------- internals

    async def _supervise(self) -> None:
        while True:
            try:
                await self._connect()
                reason = await self._trouble()
                if reason is not None:  # a vanished room was handled where it was noticed
                    self._lost(reason)
            except FAILURES as error:
                self._lost(f"{type(error).__name__}: {error}")
            except Exception as error:  # one broad catch per task loop: log, retry
                log.exception("janus room supervisor failed")
                self._lost(f"unexpected: {error}")
            await self._drop_session()
            if self._vanished.is_set():
                continue  # Janus is there, only our room is not: create it again at once
            delay = self._backoff.next_delay()
            log.info("janus reconnect in %.1fs url=%s", delay, self._settings.url)
            await asyncio.sleep(delay)

    async def _connect(self) -> None:
        if self._http is None:
            raise RuntimeError("JanusRoom.start() was not called")
        self.state = RoomState.CONNECTING
        self._vanished.clear()
        self._session = await JanusSession.create(self._http, self._settings.url)
        self._handle = await self._session.attach("janus.plugin.videoroom")
        await self._destroy_room(self._handle)
        await self._handle.request(self._create_body())
        self.generation += 1
        self.state = RoomState.READY
        self.last_error = ""
        self._backoff.reset()
        self._ready.set()
        log.info(
            "janus room ready room=%d publishers=%d codecs=%s pin=%s session=%d generation=%d",
            self._settings.room,
            self._publishers,
            VIDEO_CODECS,
            mask(self._pin) if self._pin else "none",
            self._session.id,
            self.generation,
        )

    async def _trouble(self) -> str | None:
        """Wait until the session is lost (return why) or the room vanished (None)."""
        if self._session is None:
            return "no session"
        lost = asyncio.ensure_future(self._session.wait_lost())
        vanished = asyncio.ensure_future(self._vanished.wait())
        try:
            await asyncio.wait((lost, vanished), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            vanished.cancel()
        if lost.done() and not lost.cancelled():
            return f"session lost: {lost.result()}"
        return None

    def _room_vanished(self, generation: int, noticed_by: str) -> None:
        """Janus answered 426 for our room: the feeds are gone, re-create it (supervisor)."""
        if generation != self.generation or self.state is not RoomState.READY:
            return  # an answer about a room we already replaced, or already handled
        self._vanished.set()
        self._lost(f"room vanished ({noticed_by} answered 426: destroyed by someone?)")

    def _ready_handle(self) -> JanusHandle:
        handle = self._handle
        if handle is None or self.state is not RoomState.READY:
            raise RoomUnavailable(f"room {self._settings.room} is {self.state.value}")
        return handle

    async def _check(self, handle: JanusHandle, body: dict[str, Any]) -> dict[str, Any]:
        """A quick request on our handle about our room; 426 means the room vanished."""
        generation = self.generation
        try:
            data, _ = await handle.message(body, timeout=self._check_timeout)
        except JanusError as error:
            if error.code == NO_SUCH_ROOM:
                self._room_vanished(generation, str(body.get("request")))
            raise RoomUnavailable(f"{body.get('request')}: {error}", error.code) from error
        except (JanusUnavailable, aiohttp.ClientError) as error:
            raise RoomUnavailable(f"{body.get('request')}: {error}") from error
        return data

    def _create_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request": "create",
            "room": self._settings.room,
            "description": f"CVH-Camera room {self._settings.room}",
            "publishers": self._publishers,
            "bitrate": self._settings.bitrate,
            "secret": self._settings.secret,
            "videocodec": VIDEO_CODECS,
            "h264_profile": PROFILE_LEVEL_ID,
            "audiocodec": "opus",
            "permanent": False,
        }
        if self._pin:
            body["pin"] = self._pin
        if self._settings.admin_key:
            body["admin_key"] = self._settings.admin_key
        return body

    async def _destroy_room(self, handle: JanusHandle) -> None:
        """Destroy our room number in Janus; a room that does not exist is fine."""
        request = {
            "request": "destroy",
            "room": self._settings.room,
            "secret": self._settings.secret,
        }
        try:
            await handle.request(request)
        except JanusError as error:
            if error.code != NO_SUCH_ROOM:
                raise
            return
        log.info("janus room destroyed room=%d", self._settings.room)

    def _lost(self, reason: str) -> None:
        was_ready = self.state is RoomState.READY
        self.state = RoomState.DOWN
        self._ready.clear()
        self.last_error = reason
        if was_ready:
            # What went with it, the owner's on_lost says (feeds removed, an edge emptied).
            log.error("janus lost url=%s reason=%s; reconnecting", self._settings.url, reason)
            self._on_lost()
        else:
            log.warning("janus unreachable url=%s reason=%s", self._settings.url, reason)

    async def _drop_session(self) -> None:
        session, self._session, self._handle = self._session, None, None
        if session is not None:
            await session.destroy()

    async def _work(self) -> None:
        while True:
            request = await self._requests.get()
            try:
                if isinstance(request, _Bitrate):
                    await self._send_bitrate(request)
                elif isinstance(request, _Kick):
                    await self._kick(request)
                else:
                    await self._send_pin(request)
            except (*FAILURES, RoomUnavailable) as error:
                log.warning(
                    "janus request failed request=%s error=%s", type(request).__name__, error
                )
            except Exception:
                log.exception("janus request failed")

    async def _send_bitrate(self, request: _Bitrate) -> None:
        if self._http is None:
            return
        body = {"request": "configure", "bitrate": request.bitrate}
        await send_plugin_message(
            self._http, self._settings.url, request.session_id, request.handle_id, body
        )
        log.info("janus bitrate set slot=%d bitrate=%d", request.slot, request.bitrate)

    async def _kick(self, request: _Kick) -> None:
        try:
            handle = self._ready_handle()
        except RoomUnavailable:
            return  # no room, no seat to free
        await self._kick_on(handle, request.feed_id)

    async def _kick_on(self, handle: JanusHandle, feed_id: int | str) -> None:
        body = {
            "request": "kick",
            "room": self._settings.room,
            "secret": self._settings.secret,
            "id": feed_id,
        }
        try:
            await self._check(handle, body)
        except RoomUnavailable as error:
            if error.code == NO_SUCH_FEED:
                return  # it left by itself
            raise
        log.info("janus publisher kicked room=%d feed=%s", self._settings.room, feed_id)

    async def _send_pin(self, request: _EditPin) -> None:
        try:
            handle = self._ready_handle()
        except RoomUnavailable:
            log.info("janus not ready: the new pin applies when the room is created")
            return
        body = {
            "request": "edit",
            "room": self._settings.room,
            "secret": self._settings.secret,
            "new_pin": request.pin,
        }
        await self._check(handle, body)
        log.info("janus room pin changed room=%d pin=%s", self._settings.room, mask(request.pin))


def _participant(entry: object) -> Participant | None:
    """A `listparticipants` entry; None for one without a usable id."""
    if not isinstance(entry, dict):
        return None
    feed_id, display = entry.get("id"), entry.get("display")
    if isinstance(feed_id, bool) or not isinstance(feed_id, int | str):
        return None
    shown = display if isinstance(display, str) else ""
    return Participant(feed_id, shown, entry.get("publisher") is True, entry.get("remote") is True)
