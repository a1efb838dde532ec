"""The appliance's socket.io session with the slot server (docs/protocol.md, sender side).

`sender_init` proves slot and token; `set_feed_id` reports the Janus publisher once it is
up. The server may lower our bitrate at any time (`new_controller_bitrate_limit`).
Reconnection is the supervisor's job, so the client itself never reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import socketio

from cvh_camera.appliance.publisher import PublishedFeed
from cvh_camera.protocol import NEEDS_A_PERSON

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0


# Refusals that retrying soon cannot fix: a person must change the token or the slot. A slot
# that is not activated yet is not among them: controllers activate it when the lesson
# starts, often a moment after the camera came up, so that refusal is retried on the normal
# backoff.
class SlotRejected(Exception):
    """The slot server refused us; `needs_a_person` when retrying soon is pointless."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.needs_a_person = message in NEEDS_A_PERSON


class ServerUnreachable(Exception):
    """No socket.io connection, or it broke, or a request got no answer in time."""


class SlotClient:
    def __init__(
        self, url: str, socketio_path: str, *, on_controller_limit: Callable[[int], None]
    ) -> None:
        self._url = url
        self._path = socketio_path
        self._on_controller_limit = on_controller_limit
        self._sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self._gone = asyncio.Event()
        self._sio.on("disconnect", self._disconnected)
        self._sio.on("new_controller_bitrate_limit", self._limit)

    async def connect(self) -> None:
        try:
            await self._sio.connect(
                self._url,
                socketio_path=self._path,
                transports=["websocket"],
                wait_timeout=REQUEST_TIMEOUT,
            )
        except (socketio.exceptions.ConnectionError, OSError) as error:
            raise ServerUnreachable(f"cannot connect to {self._url}: {error}") from error
        self._gone.clear()

    async def authenticate(self, slot: int, token: str) -> None:
        answer = await self._call("sender_init", {"slot": slot, "token": token})
        log.info("slot server: %s slot=%d", answer["message"], slot)

    async def report_feed(self, feed: PublishedFeed, name: str) -> int:
        """`set_feed_id`; returns the controller's bitrate limit (0 = none)."""
        body: dict[str, Any] = {
            "feedId": feed.feed_id,
            "sessionId": feed.session_id,
            "videoroomId": feed.handle_id,
        }
        if name:
            body["customName"] = name
        answer = await self._call("set_feed_id", body)
        limit = answer.get("controllerBitrateLimit")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) else 0

    async def wait_disconnected(self) -> str:
        await self._gone.wait()
        return "slot server connection lost"

    async def close(self) -> None:
        if self._sio.connected:
            await self._sio.disconnect()

    async def _call(self, event: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self._sio.call(event, body, timeout=REQUEST_TIMEOUT)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError) as error:
            raise ServerUnreachable(f"{event}: no answer from the slot server") from error
        if not isinstance(answer, dict) or not isinstance(answer.get("message"), str):
            raise ServerUnreachable(f"{event}: unexpected answer {answer!r}")
        if answer.get("success") is not True:
            raise SlotRejected(answer["message"])
        return answer

    async def _disconnected(self, *reason: Any) -> None:
        self._gone.set()

    async def _limit(self, data: Any) -> None:
        limit = data.get("bitrateLimit") if isinstance(data, dict) else None
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            log.info("controller bitrate limit=%d", limit)
            self._on_controller_limit(limit)
