"""The slot server's aiohttp application: `create_app(config)` builds and wires everything.

Every background task (socket.io outbox, notify writer, Janus room, edges, controller input) is
started and stopped by a cleanup context of the app; shutdown first tells receivers
`remove_all_feeds`, then destroys the Janus room and session.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from cvh_camera.server.attempts import AttemptLimiter
from cvh_camera.server.cascade import Cascade
from cvh_camera.server.config import ServerConfig
from cvh_camera.server.controller import ControllerInput, handle_line
from cvh_camera.server.engine import SlotSocketServer
from cvh_camera.server.janus_room import JanusRoom
from cvh_camera.server.notify import NoNotify, NotifyFile
from cvh_camera.server.origins import OriginPolicy
from cvh_camera.server.outbox import SocketOutbox
from cvh_camera.server.pages import add_pages, browser_janus_url, edge_browser_urls
from cvh_camera.server.receivers import ReceiverSpread
from cvh_camera.server.seats import SeatGuard
from cvh_camera.server.service import SlotService
from cvh_camera.server.slots import SlotTable
from cvh_camera.server.socketio_handlers import register_handlers
from cvh_camera.tasks import stop_tasks

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", ServerConfig)
SERVICE = web.AppKey("service", SlotService)
ROOM = web.AppKey("room", JanusRoom)
SIO = web.AppKey("sio", SlotSocketServer)
OUTBOX = web.AppKey("outbox", SocketOutbox)
SEATS = web.AppKey("seats", SeatGuard)
CASCADE = web.AppKey("cascade", Cascade)
RECEIVERS = web.AppKey("receivers", ReceiverSpread)

# How long shutdown waits for connections to close after `remove_all_feeds` went out. Browsers
# close at once when told; a client that does not must not hold the Janus room hostage.
SHUTDOWN_GRACE = 2.0
CLOSE_WAIT = 1.0  # of that, for websocket clients to close by themselves before they are cut
STOP_TIMEOUT = 1.0  # for each background task to end once cancelled
# The largest socket.io message accepted (bytes): big enough that even an absurd token is
# answered (refused) rather than cutting the connection.
MAX_MESSAGE = 2 << 20


def create_app(
    config: ServerConfig,
    *,
    controller_stream: IO[bytes] | IO[str] | None = None,
) -> web.Application:
    """Build the app. `controller_stream` defaults to stdin when `config.read_stdin`."""
    app = web.Application()
    sio = SlotSocketServer(
        async_mode="aiohttp",
        cors_allowed_origins=OriginPolicy(config.cors_allowed_origins),
        cors_credentials=False,  # the pages send no cookies; nobody else's page may borrow ours
        async_handlers=False,  # one client's events are handled in the order it sent them
        ping_interval=10,  # a sender that vanished (power cut) frees its slot within ~20 s
        ping_timeout=10,
        max_http_buffer_size=MAX_MESSAGE,
        websocket_compression=config.websocket_compression,
        logger=False,
        engineio_logger=False,
    )
    _attach(sio, app, config.socketio_path)

    table = SlotTable(config.slots, config.janus.bitrate)
    outbox = SocketOutbox(sio)
    notifier: NotifyFile | NoNotify = (
        NotifyFile(Path(config.notify_path)) if config.notify_path else NoNotify()
    )
    room = JanusRoom(config.janus, config.slots, on_lost=lambda: service.janus_lost())
    cascade = Cascade(room, config.janus, config.slots, lambda: table.claimed().keys())
    service = SlotService(table, outbox, notifier, cascade, on_feeds_changed=cascade.feeds_changed)
    for preset in config.preactivated:
        service.activate_slot(preset.slot, preset.token, preset.annotation)
    limiter = AttemptLimiter(config.failed_attempts, config.attempt_window)
    seats = SeatGuard(room, service, grace=config.publisher_grace)
    receivers = ReceiverSpread(
        browser_janus_url(config.janus), edge_browser_urls(config.janus), cascade.usable
    )
    register_handlers(sio, service, limiter, seats.set_feed_id, receivers)
    app[SEATS], app[CASCADE], app[RECEIVERS] = seats, cascade, receivers

    app[CONFIG], app[SERVICE], app[ROOM], app[SIO], app[OUTBOX] = config, service, room, sio, outbox
    app.cleanup_ctx.append(_task_ctx("socket.io outbox", outbox.run))
    if isinstance(notifier, NotifyFile):
        app.cleanup_ctx.append(_notify_ctx(notifier))
    app.cleanup_ctx.append(_room_ctx(room))
    app.cleanup_ctx.append(_cascade_ctx(cascade))
    app.cleanup_ctx.append(_task_ctx("seat guard", seats.run))
    if controller_stream is None and config.read_stdin:
        controller_stream = sys.stdin
    if controller_stream is not None:
        reader = ControllerInput(controller_stream, lambda line: handle_line(service, line))
        app.cleanup_ctx.append(_task_ctx("controller input", reader.run))
    app.on_shutdown.append(_say_goodbye)
    app.router.add_get("/healthz", _health)
    add_pages(app, config)
    return app


def _attach(sio: SlotSocketServer, app: web.Application, path: str) -> None:
    """Serve socket.io at `path`, with and without the trailing slash clients differ on."""
    sio.attach(app, socketio_path=path)
    bare = "/" + path.strip("/")
    for method in ("GET", "POST", "OPTIONS"):
        app.router.add_route(method, bare, sio.eio.handle_request)


def _task_ctx(
    name: str, run: Callable[[], Coroutine[Any, Any, None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task: asyncio.Task[None] = asyncio.create_task(run(), name=name)
        yield
        await stop_tasks([task], STOP_TIMEOUT)

    return ctx


def _notify_ctx(notifier: NotifyFile) -> Callable[[web.Application], AsyncIterator[None]]:
    run = _task_ctx("notify file", notifier.run)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async for _ in run(app):
            yield
        notifier.flush()

    return ctx


def _cascade_ctx(cascade: Cascade) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        cascade.start()
        yield
        await cascade.close()

    return ctx


def _room_ctx(room: JanusRoom) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        room.start()
        yield
        await room.close()

    return ctx


async def _say_goodbye(app: web.Application) -> None:
    """Tell receivers, then close every connection so shutdown need not wait for them.

    Closing at the Engine.IO level (not a socket.io disconnect) lets clients reconnect by
    themselves to the next server, as they did when the original server exited.
    """
    app[SERVICE].shutting_down()
    await app[OUTBOX].drain(CLOSE_WAIT)
    await app[SIO].eio.close_all(CLOSE_WAIT)


async def _health(request: web.Request) -> web.Response:
    app = request.app
    service = app[SERVICE]
    body = {
        "janus": app[ROOM].status(),
        "edges": app[CASCADE].status(),
        "receivers": app[RECEIVERS].counts(),
        "slots": service.table.count,
        "activated": [s.index for s in service.table if s.active],
        "feeds": {k: v["feedId"] for k, v in service.query_state().items()},
    }
    return web.json_response(body)
