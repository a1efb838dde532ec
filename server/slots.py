"""The slot table: which camera slots are activated, with which token, and which feed they carry.

Pure state and the contract's rules (docs/protocol.md) that only look at state. No I/O
here: the service (`server.service`) turns changes into socket.io messages, notify lines
and Janus requests.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

CORNERS = ("lt", "lb", "rt", "rb")
VISIBILITY_COMMANDS = ("hide", "show")
GEOMETRY_COMMANDS = ("set_geometry_relative_to_window", "set_geometry_relative_to_canvas")


@dataclass(frozen=True)
class SlotCommand:
    """The last visibility or geometry command of a slot, as receivers get it."""

    command: str
    params: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"command": self.command, "params": list(self.params)}


DEFAULT_VISIBILITY = SlotCommand("show")
DEFAULT_GEOMETRY = SlotCommand("set_geometry_relative_to_canvas", ("rb", "0", "0", "320", "240"))

FeedId = int | str


@dataclass(frozen=True)
class Feed:
    """A published Janus feed, verified through the slot's token."""

    feed_id: FeedId
    sender_sid: str
    session_id: int
    handle_id: int


@dataclass
class Slot:
    index: int
    default_bitrate: int
    token: str | None = None
    feed: Feed | None = None
    annotation: str | None = None
    visibility: SlotCommand = DEFAULT_VISIBILITY
    geometry: SlotCommand = DEFAULT_GEOMETRY
    controller_bitrate_limit: int = 0
    user_bitrate_limit: int = 0

    def __post_init__(self) -> None:
        self.controller_bitrate_limit = self.default_bitrate

    @property
    def active(self) -> bool:
        return self.token is not None

    def token_matches(self, token: object) -> bool:
        """Constant-time comparison; a non-string token never matches."""
        if self.token is None or not isinstance(token, str):
            return False
        return hmac.compare_digest(self.token.encode(), token.encode())

    @property
    def effective_bitrate(self) -> int:
        """The user's limit where tighter than the controller's or the controller sets none."""
        controller, user = self.controller_bitrate_limit, self.user_bitrate_limit
        if controller == 0 or 0 < user < controller:
            return user
        return controller

    def feed_state(self) -> dict[str, Any]:
        """What receivers learn of an active feed (`query_state` entries, `new_feed` payload)."""
        if self.feed is None:
            raise LookupError(f"slot {self.index} has no active feed")
        return {
            "feedId": self.feed.feed_id,
            "visibility": self.visibility.to_wire(),
            "geometry": self.geometry.to_wire(),
            "annotation": self.annotation,
        }

    def clear_feed(self) -> Feed | None:
        """Forget the feed (sender gone); returns the feed that was active, if any."""
        feed, self.feed = self.feed, None
        self.user_bitrate_limit = 0
        return feed

    def deactivate(self) -> None:
        self.clear_feed()
        self.token = None
        self.annotation = None
        self.controller_bitrate_limit = self.default_bitrate


@dataclass
class SlotTable:
    count: int
    default_bitrate: int
    slots: list[Slot] = field(init=False)

    def __post_init__(self) -> None:
        self.slots = [Slot(i, self.default_bitrate) for i in range(self.count)]

    def __getitem__(self, index: int) -> Slot:
        return self.slots[index]

    def __iter__(self) -> Iterator[Slot]:
        return iter(self.slots)

    def exists(self, index: int) -> bool:
        return 0 <= index < self.count

    def feeds_of(self, sid: str) -> list[Slot]:
        return [s for s in self.slots if s.feed is not None and s.feed.sender_sid == sid]

    def active_feeds(self) -> list[Slot]:
        return [s for s in self.slots if s.feed is not None]

    def claimed(self) -> dict[FeedId, int]:
        """The feed ids verified senders reported, with the slot that carries each."""
        return {s.feed.feed_id: s.index for s in self.slots if s.feed is not None}

    def owner_of(self, feed_id: FeedId) -> int | None:
        """The slot whose active feed this is, if any."""
        return self.claimed().get(feed_id)

    def snapshot(self) -> dict[str, Any]:
        """A comparable picture of the whole state (tests: 'bad input changes nothing')."""
        return {
            str(s.index): (
                s.token,
                s.feed,
                s.annotation,
                s.visibility,
                s.geometry,
                s.controller_bitrate_limit,
                s.user_bitrate_limit,
            )
            for s in self.slots
        }
