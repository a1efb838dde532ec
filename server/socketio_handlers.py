"""socket.io events (PROTOCOL.md §1), wired to the slot service.

Handlers accept any number of arguments: the first is the payload, the rest are ignored, and
no payload at all is `None`. Whatever comes in, a request with an acknowledgement callback
gets exactly one answer; an unexpected error is logged and answered, never raised into
socket.io.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from server.payloads import refused, shown
from server.service import SlotService

log = logging.getLogger(__name__)

Handler = Callable[[str, object], Any]


def _guarded(name: str, handler: Handler) -> Callable[..., Any]:
    async def on_event(sid: str, *args: Any) -> Any:
        try:
            return handler(sid, args[0] if args else None)
        except Exception:
            log.exception("socket.io handler failed event=%s sid=%s", name, sid)
            return refused("Internal server error")

    return on_event


def register_handlers(sio: socketio.AsyncServer, service: SlotService) -> None:
    events: dict[str, Handler] = {
        "sender_init": service.sender_init,
        "change_name": service.change_name,
        "set_bitrate_limit": service.set_bitrate_limit,
        "query_state": lambda sid, data: service.query_state(),
    }
    for name, handler in events.items():
        sio.on(name, _guarded(name, handler))

    async def on_disconnect(sid: str, *reason: Any) -> None:
        try:
            service.disconnected(sid)
        except Exception:
            log.exception("disconnect handling failed sid=%s", sid)

    async def on_unknown(event: Any, sid: str, *args: Any) -> Any:
        log.info("unknown socket.io event=%s sid=%s", shown(event), sid)
        return refused(f"Unknown event {shown(event)}")

    sio.on("disconnect", on_disconnect)
    sio.on("*", on_unknown)


def register_feed_handler(
    sio: socketio.AsyncServer, set_feed_id: Callable[[str, object], Awaitable[Any]]
) -> None:
    """`set_feed_id` asks Janus before the service commits (`server.seats.SeatGuard`)."""

    async def on_set_feed_id(sid: str, *args: Any) -> Any:
        try:
            return await set_feed_id(sid, args[0] if args else None)
        except Exception:
            log.exception("socket.io handler failed event=set_feed_id sid=%s", sid)
            return refused("Internal server error")

    sio.on("set_feed_id", on_set_feed_id)
