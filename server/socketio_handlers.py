"""socket.io events (docs/protocol.md), wired to the slot service.

Handlers accept any number of arguments: the first is the payload, the rest are ignored, and
no payload at all is `None`. Whatever comes in, a request with an acknowledgement callback
gets exactly one answer; an unexpected error is logged and answered, never raised into
socket.io.

`sender_init` is guarded against guessing: a client address with too many wrong tokens
lately is refused without its token being looked at (`AttemptLimiter`), and an absurdly
long token is refused before any comparison.
"""

from __future__ import annotations

import inspect
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import socketio

from cvh_camera.protocol import INVALID_TOKEN
from cvh_camera.server.attempts import AttemptLimiter
from cvh_camera.server.payloads import MAX_TOKEN, refused, shown
from cvh_camera.server.receivers import ReceiverSpread
from cvh_camera.server.service import SlotService

log = logging.getLogger(__name__)

Handler = Callable[[str, object], Any]
_KEPT_ENVIRON = frozenset({"aiohttp.request", "HTTP_X_FORWARDED_FOR"})


def _guarded(name: str, handler: Handler) -> Callable[..., Any]:
    """The handler, given the first argument or None, awaited if it is asynchronous."""

    async def on_event(sid: str, *args: Any) -> Any:
        try:
            answer = handler(sid, args[0] if args else None)
            return await answer if inspect.isawaitable(answer) else answer
        except Exception:
            log.exception("socket.io handler failed event=%s sid=%s", name, sid)
            return refused("Internal server error")

    return on_event


def client_address(sio: socketio.AsyncServer, sid: str) -> str:
    """The client's IP address; behind a reverse proxy on this machine, the one it forwards."""
    environ = sio.get_environ(sid) or {}
    request = environ.get("aiohttp.request")
    peer = (request.remote if request is not None else None) or "unknown"
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded and _is_loopback(peer):
        return str(forwarded.split(",")[-1].strip()) or peer
    return str(peer)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _limited(sio: socketio.AsyncServer, limiter: AttemptLimiter, sender_init: Handler) -> Handler:
    """`sender_init` with the attempt limit and the token length checked first."""

    def guarded(sid: str, data: object) -> Any:
        address = client_address(sio, sid)
        wait = limiter.retry_after(address)
        if wait:
            log.warning("sender_init refused: too many attempts sid=%s address=%s", sid, address)
            return refused(f"Too many attempts, try again in {wait} s")
        token = data.get("token") if isinstance(data, dict) else None
        if isinstance(token, str) and len(token) > MAX_TOKEN:
            log.warning("sender_init refused: token of %d characters sid=%s", len(token), sid)
            answer = refused(INVALID_TOKEN)
        else:
            answer = sender_init(sid, data)
        if answer.get("message") == INVALID_TOKEN:
            limiter.failed(address)
        return answer

    return guarded


def register_handlers(
    sio: socketio.AsyncServer,
    service: SlotService,
    limiter: AttemptLimiter,
    set_feed_id: Handler,
    receivers: ReceiverSpread,
) -> None:
    """`set_feed_id` asks Janus before the service commits (`server.seats.SeatGuard`);
    `query_janus_url` is ours (not the original's): which Janus a receiver page uses."""
    events: dict[str, Handler] = {
        "sender_init": _limited(sio, limiter, service.sender_init),
        "set_feed_id": set_feed_id,
        "change_name": service.change_name,
        "set_bitrate_limit": service.set_bitrate_limit,
        "query_state": lambda sid, data: service.query_state(),
        "query_janus_url": receivers.query,
    }
    for name, handler in events.items():
        sio.on(name, _guarded(name, handler))

    async def on_disconnect(sid: str, *reason: Any) -> None:
        try:
            receivers.forget(sid)
            service.disconnected(sid)
        except Exception:
            log.exception("disconnect handling failed sid=%s", sid)

    async def on_unknown(event: Any, sid: str, *args: Any) -> Any:
        log.info("unknown socket.io event=%s sid=%s", shown(event), sid)
        return refused(f"Unknown event {shown(event)}")

    async def on_connect(sid: str, environ: dict[str, Any], *auth: Any) -> None:
        """socket.io keeps the connection's WSGI environ, a copy of every request header,
        for the connection's life: keep only what `client_address` reads (~1.5 KB less per
        receiver). The old dict is emptied too: a websocket's request handlers hold it, and
        nothing reads it once the connection is up."""
        eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
        if eio_sid in sio.environ:
            sio.environ[eio_sid] = {k: v for k, v in environ.items() if k in _KEPT_ENVIRON}
            environ.clear()

    sio.on("connect", on_connect)
    sio.on("disconnect", on_disconnect)
    sio.on("*", on_unknown)
