"""The slot service: every rule of the wire contract, applied to the slot table.

Senders (socket.io), the controller (stdin) and the Janus room supervisor all change state
through this one object. Its methods are synchronous: each validates first, then changes
state, then queues what the outside must learn (socket.io messages, notify lines, Janus
requests) on injected, non-blocking collaborators, in order. So a request either changes
nothing or changes everything it should, and messages leave in the order of the changes.

`set_feed_id` also needs Janus's word that the feed id is a participant of the room; that
question is asynchronous, so the socket.io handler goes through the seat guard
(`server.seats.SeatGuard.set_feed_id`): `check_set_feed_id` first (the contract's checks,
nothing changed), then Janus, then `set_feed_id`, which checks again and commits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cvh_camera.protocol import INVALID_TOKEN, NO_SUCH_SLOT, TOKEN_REVOKED
from cvh_camera.secrets import mask
from cvh_camera.server.payloads import (
    FeedReport,
    Refusal,
    ack,
    as_object,
    check_text,
    escape_html,
    parse_bitrate_limit,
    parse_feed_report,
    parse_slot,
    refused,
)
from cvh_camera.server.slots import Feed, Slot, SlotCommand, SlotTable

log = logging.getLogger(__name__)

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
NOT_AUTHENTICATED = "This socket is not authenticated as a sender - send sender_init first"
FEED_OF_ANOTHER_SLOT = "This feed id belongs to another slot"


class Outbox(Protocol):
    """Ordered, non-blocking delivery of socket.io messages."""

    def broadcast(self, event: str, data: Any = None) -> None: ...
    def send(self, sid: str, event: str, data: Any) -> None: ...
    def disconnect(self, sid: str) -> None: ...


class Notifier(Protocol):
    """Lines for the controller's notify file."""

    def notify(self, line: str) -> None: ...


class RoomControl(Protocol):
    """Janus requests the service asks for; queued, never awaited here."""

    def apply_bitrate(self, slot: int, session_id: int, handle_id: int, bitrate: int) -> None: ...
    def edit_pin(self, pin: str) -> None: ...
    def kick_publisher(self, feed_id: int | str) -> None: ...


class CommandRejected(Exception):
    """A controller command that breaks a rule; logged and ignored by the caller."""


@dataclass(frozen=True)
class SenderAuth:
    """What a socket proved with `sender_init`."""

    slot: int
    token: str


class SlotService:
    def __init__(
        self,
        table: SlotTable,
        outbox: Outbox,
        notifier: Notifier,
        room: RoomControl,
        *,
        on_feeds_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.table = table
        self._outbox = outbox
        self._notifier = notifier
        self._room = room
        self._feeds_changed = on_feeds_changed  # the verified feeds changed (server.cascade)
        self._senders: dict[str, SenderAuth] = {}

    # ----------------------------------------------------------------- senders

    def sender_init(self, sid: str, data: object) -> dict[str, Any]:
        try:
            auth = self._authenticate(data)
        except Refusal as refusal:
            log.info("sender_init refused sid=%s reason=%r", sid, refusal.message)
            return refused(refusal.message)
        self._senders[sid] = auth
        log.info("sender authenticated sid=%s slot=%d", sid, auth.slot)
        return ack("Socket authenticated")

    def _authenticate(self, data: object) -> SenderAuth:
        body = as_object(data, "No data provided")
        if body.get("slot") is None:
            raise Refusal("No slot provided")
        index = parse_slot(body["slot"])
        if not self.table.exists(index):
            raise Refusal(NO_SUCH_SLOT)
        slot = self.table[index]
        if not slot.active:
            raise Refusal("This camera slot is not activated, contact your moderator")
        token = body.get("token")
        if token is None:
            raise Refusal("No token provided")
        if not slot.token_matches(token):
            shown = mask(token) if isinstance(token, str) else type(token).__name__
            log.warning("wrong token slot=%d token=%s", index, shown)
            raise Refusal(INVALID_TOKEN)
        return SenderAuth(index, str(token))

    def check_set_feed_id(self, sid: str, data: object) -> FeedReport | dict[str, Any]:
        """`set_feed_id`'s checks, changing nothing: the report, or the refusal to answer."""
        auth = self._senders.get(sid)
        if auth is None:
            return refused(NOT_AUTHENTICATED)
        slot = self.table[auth.slot]
        try:
            if not slot.token_matches(auth.token):
                raise Refusal(TOKEN_REVOKED)
            if slot.feed is not None and slot.feed.sender_sid != sid:
                raise Refusal("There is already somebody using this slot")
            report = parse_feed_report(data)
            if self.table.owner_of(report.feed_id) not in (None, slot.index):
                raise Refusal(FEED_OF_ANOTHER_SLOT)  # leaving, it would kick their camera
        except Refusal as refusal:
            log.info(
                "set_feed_id refused sid=%s slot=%d reason=%r", sid, slot.index, refusal.message
            )
            return refused(refusal.message)
        return report

    def set_feed_id(self, sid: str, data: object) -> dict[str, Any]:
        """The contract's checks, then the feed is set. Janus's check comes before (seats)."""
        report = self.check_set_feed_id(sid, data)
        if not isinstance(report, FeedReport):
            return report
        slot = self.table[self._senders[sid].slot]
        if slot.feed is not None:  # the same sender republished (e.g. after a Janus restart)
            same = slot.feed.feed_id == report.feed_id  # reported again: keep it in the room
            self._clear_feed(slot, "replaced by its sender", kick=not same)
        slot.feed = Feed(report.feed_id, sid, report.session_id, report.handle_id)
        log.info("feed set slot=%d feed=%s sid=%s", slot.index, report.feed_id, sid)
        self._feeds_changed()
        self._outbox.broadcast("new_feed", {"slot": slot.index, **slot.feed_state()})
        self._notifier.notify(f"new_feed {slot.index}")
        if report.custom_name is not None:
            self._report_name(slot, report.custom_name)
        if slot.effective_bitrate != self.table.default_bitrate:
            self._apply_bitrate(slot)
        return ack(
            "Successfully set feed id - you are now using this slot",
            controllerBitrateLimit=slot.controller_bitrate_limit,
        )

    def change_name(self, sid: str, data: object) -> dict[str, Any]:
        """No acknowledgement in the contract; one is returned for clients that ask."""
        try:
            slot = self._owned_slot(sid)
            body = as_object(data, "Got no data in the request")
            if body.get("newName") is None:
                raise Refusal("Got no new name in the request")
            name = check_text(body["newName"], "new name")
        except Refusal as refusal:
            log.info("change_name refused sid=%s reason=%r", sid, refusal.message)
            return refused(refusal.message)
        if not self._report_name(slot, name):
            return refused("The name is empty")
        return ack("Your name was updated")

    def set_bitrate_limit(self, sid: str, data: object) -> dict[str, Any]:
        try:
            slot = self._owned_slot(sid)
            limit = parse_bitrate_limit(data)
        except Refusal as refusal:
            log.info("set_bitrate_limit refused sid=%s reason=%r", sid, refusal.message)
            return refused(refusal.message)
        before = slot.effective_bitrate
        slot.user_bitrate_limit = limit
        log.info("user bitrate limit slot=%d limit=%d", slot.index, limit)
        if slot.effective_bitrate != before:
            self._apply_bitrate(slot)
        return ack("Your bitrate limit was updated")

    def _owned_slot(self, sid: str) -> Slot:
        auth = self._senders.get(sid)
        if auth is None:
            raise Refusal(NOT_AUTHENTICATED)
        slot = self.table[auth.slot]
        if slot.feed is None:
            raise Refusal("There is no camera feed being transmitted")
        if slot.feed.sender_sid != sid:
            raise Refusal("You are not the sender of this slot")
        return slot

    def query_state(self) -> dict[str, Any]:
        return {str(slot.index): slot.feed_state() for slot in self.table.active_feeds()}

    def disconnected(self, sid: str) -> None:
        self._senders.pop(sid, None)
        for slot in self.table.feeds_of(sid):
            self._clear_feed(slot, "sender disconnected")

    # -------------------------------------------------------------- controller

    def activate_slot(self, index: int, token: str, annotation: str | None) -> None:
        slot = self.table[index]
        if slot.active:
            raise CommandRejected(f"slot {index} is already activated")
        if not token:
            raise CommandRejected(f"no token given for slot {index}")
        slot.token = token
        log.info("slot activated slot=%d token=%s", index, mask(token))
        if annotation:
            self.set_annotation(index, annotation)

    def refresh_token(self, index: int, token: str) -> None:
        slot = self._active_slot(index)
        if not token:
            raise CommandRejected(f"no token given for slot {index}; keeping the old one")
        slot.token = token
        log.info("token refreshed slot=%d token=%s", index, mask(token))

    def deactivate_slot(self, index: int) -> None:
        slot = self._active_slot(index)
        sender = slot.feed.sender_sid if slot.feed else None
        if slot.feed is not None:
            self._clear_feed(slot, "slot deactivated")
        slot.deactivate()
        log.info("slot deactivated slot=%d", index)
        if sender is not None:
            self._senders.pop(sender, None)
            self._outbox.disconnect(sender)

    def set_annotation(self, index: int, annotation: str) -> None:
        if not annotation:
            raise CommandRejected(f"no annotation given for slot {index}")
        slot = self.table[index]
        slot.annotation = annotation
        log.info("annotation set slot=%d", index)
        if slot.feed is not None:
            self._outbox.broadcast("set_annotation", {"slot": index, "annotation": annotation})

    def remove_annotation(self, index: int) -> None:
        slot = self.table[index]
        slot.annotation = None
        log.info("annotation removed slot=%d", index)
        if slot.feed is not None:
            self._outbox.broadcast("remove_annotation", {"slot": index})

    def set_controller_bitrate_limit(self, index: int, limit: int) -> None:
        slot = self._active_slot(index)
        if limit < 0:
            raise CommandRejected(f"bitrate limit {limit} for slot {index} is negative")
        before = slot.effective_bitrate
        slot.controller_bitrate_limit = limit
        log.info("controller bitrate limit slot=%d limit=%d", index, limit)
        if slot.feed is None:
            return
        self._outbox.send(
            slot.feed.sender_sid, "new_controller_bitrate_limit", {"bitrateLimit": limit}
        )
        if slot.effective_bitrate != before:
            self._apply_bitrate(slot)

    def set_slot_command(self, index: int, command: SlotCommand, *, geometry: bool) -> None:
        slot = self.table[index]
        if geometry:
            slot.geometry = command
        else:
            slot.visibility = command
        log.info(
            "slot command slot=%d command=%s params=%s", index, command.command, command.params
        )
        if slot.feed is not None:
            self._outbox.broadcast("command", {"slot": index, **command.to_wire()})

    def edit_pin(self, pin: str) -> None:
        self._room.edit_pin(pin)

    def _active_slot(self, index: int) -> Slot:
        slot = self.table[index]
        if not slot.active:
            raise CommandRejected(f"slot {index} is not activated")
        return slot

    # ------------------------------------------------------------ Janus, shutdown

    def janus_lost(self) -> None:
        """Feeds died with the Janus session: receivers must stop waiting for them."""
        for slot in self.table.active_feeds():
            self._clear_feed(slot, "Janus went away", kick=False)

    def shutting_down(self) -> None:
        self._outbox.broadcast("remove_all_feeds")

    # ----------------------------------------------------------------- helpers

    def _clear_feed(self, slot: Slot, why: str, *, kick: bool = True) -> None:
        """Forget the slot's feed and tell everyone. With `kick`, its publisher also leaves
        Janus: a sender that died (kill -9, power cut) must not keep the room's seat."""
        feed = slot.clear_feed()
        if feed is None:
            return
        log.info("feed removed slot=%d feed=%s reason=%r", slot.index, feed.feed_id, why)
        self._feeds_changed()
        self._outbox.broadcast("remove_feed", {"slot": slot.index})
        self._notifier.notify(f"remove_feed {slot.index}")
        if kick:
            self._room.kick_publisher(feed.feed_id)

    def _report_name(self, slot: Slot, name: str) -> bool:
        name = _CONTROL_CHARS.sub(" ", name).strip()  # a newline would forge notify lines
        if not name:
            log.info("blank custom name ignored slot=%d", slot.index)
            return False
        escaped = escape_html(name)
        if escaped != name:
            log.warning("custom name needed HTML escaping slot=%d", slot.index)
        self._notifier.notify(f"custom_name {slot.index} {escaped}")
        return True

    def _apply_bitrate(self, slot: Slot) -> None:
        if slot.feed is None:
            return
        bitrate = slot.effective_bitrate
        log.info("bitrate change slot=%d bitrate=%d", slot.index, bitrate)
        self._room.apply_bitrate(slot.index, slot.feed.session_id, slot.feed.handle_id, bitrate)
