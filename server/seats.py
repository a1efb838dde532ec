"""Seats in the Janus room: only publishers that a verified sender claimed keep one.

The room pin is public (every receiver page knows it), so anybody can join the room as a
publisher, straight to Janus or through our /janus proxy, and take one of its seats
(`publishers` = number of slots): a camera with a valid token is then refused by Janus.
So the seat guard lists the room's participants once a second (`listparticipants` on the
server's own handle) and kicks, with the room secret, every participant that no
authenticated sender claimed with `set_feed_id` within `publisher_grace` seconds of when
the guard first saw it.

What counts: every participant Janus lists, publishing or not (`publisher: false` = joined,
no media yet). One that only joined holds no seat yet, but it may publish at any moment
without the guard seeing a new id, so its grace starts when it is first seen. A real sender
(appliance, sender page) joins, publishes and reports within seconds.

Claimed: the feed ids of the slots' active feeds, and those whose `set_feed_id` is being
verified right now. `set_feed_id` is accepted only for a feed id Janus lists in the room
and that the guard has not kicked; another slot's feed id is refused by the service.

`SeatLedger` is the decision (pure: participants, claims, first-seen times, now);
`SeatGuard` does the Janus I/O around it: the watch task and the `set_feed_id` front door.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, Protocol

from cvh_camera.server.janus_room import Participant, RoomUnavailable, Roster
from cvh_camera.server.payloads import FeedReport, refused, shown
from cvh_camera.server.service import SlotService
from cvh_camera.server.slots import FeedId

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0  # seconds between two looks at the room
NOT_A_PUBLISHER = "This feed id is not a publisher of the room"
ROOM_UNAVAILABLE = "The video room is not available right now - try again"


def unverified(
    participants: Iterable[Participant],
    claimed: Collection[FeedId],
    first_seen: Mapping[FeedId, float],
    now: float,
    grace: float,
) -> list[Participant]:
    """The participants nobody claimed although first seen at least `grace` seconds ago."""
    return [
        p for p in participants if p.id not in claimed and now - first_seen.get(p.id, now) >= grace
    ]


class SeatLedger:
    """First-seen times, verifications in flight and kicks sent, for one room at a time."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._generation: int | None = None
        self._first_seen: dict[FeedId, float] = {}
        self._kicked: set[FeedId] = set()
        self._verifying: Counter[FeedId] = Counter()

    def review(self, roster: Roster, claimed: Collection[FeedId], now: float) -> list[Participant]:
        """Note who is in the room; return (and mark kicked) those to kick now."""
        if roster.generation != self._generation:  # a new room: nobody was seen in it yet
            self._generation = roster.generation
            self._first_seen.clear()
            self._kicked.clear()
        listed = roster.ids()
        self._first_seen = {i: t for i, t in self._first_seen.items() if i in listed}
        self._kicked &= listed
        for participant in roster.participants:
            self._first_seen.setdefault(participant.id, now)
        spared = {*claimed, *self._kicked, *self._verifying}
        due = unverified(roster.participants, spared, self._first_seen, now, self.grace)
        self._kicked.update(p.id for p in due)
        return due

    def kick_failed(self, feed_id: FeedId) -> None:
        """The kick did not go through: try again at the next review."""
        self._kicked.discard(feed_id)

    def was_kicked(self, feed_id: FeedId) -> bool:
        return feed_id in self._kicked

    def first_seen(self, feed_id: FeedId) -> float | None:
        return self._first_seen.get(feed_id)

    @contextlib.contextmanager
    def verifying(self, feed_id: FeedId) -> Iterator[None]:
        """While a `set_feed_id` for `feed_id` waits for Janus, the feed is not kicked."""
        self._verifying[feed_id] += 1
        try:
            yield
        finally:
            self._verifying[feed_id] -= 1
            if self._verifying[feed_id] <= 0:
                del self._verifying[feed_id]


class RoomSeats(Protocol):
    """What the guard needs of the room (`server.janus_room.JanusRoom`)."""

    async def participants(self) -> Roster: ...
    async def kick(self, feed_id: FeedId) -> None: ...


class SeatGuard:
    def __init__(
        self,
        room: RoomSeats,
        service: SlotService,
        *,
        grace: float,
        interval: float = CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._room = room
        self._service = service
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self.ledger = SeatLedger(grace)
        self.checks = 0  # completed looks at the room
        self.last_check: float | None = None  # clock() at the last completed review

    async def run(self) -> None:
        """Look at the room every `interval` seconds until cancelled."""
        while True:
            try:
                await self.check()
            except Exception:  # one broad catch per task loop: log, look again
                log.exception("seat check failed")
            await self._sleep(self._interval)

    async def check(self) -> None:
        """One look: kick every participant that stayed unclaimed for the grace period."""
        try:
            roster = await self._room.participants()
        except RoomUnavailable as error:
            log.debug("seat check skipped: %s", error)
            return
        now = self._clock()
        due = self.ledger.review(roster, self._service.table.claimed(), now)
        for participant in due:
            await self._kick(participant, now)
        self.checks += 1
        self.last_check = now

    async def _kick(self, participant: Participant, now: float) -> None:
        seen = self.ledger.first_seen(participant.id)
        log.warning(
            "kicking unverified publisher feed=%s display=%r publishing=%s unclaimed_for=%.1fs",
            participant.id,
            shown(participant.display),
            "yes" if participant.publishing else "no",
            now - seen if seen is not None else 0.0,
        )
        try:
            await self._room.kick(participant.id)
        except RoomUnavailable as error:
            self.ledger.kick_failed(participant.id)
            log.warning("kick failed feed=%s error=%s", participant.id, error)

    async def set_feed_id(self, sid: str, data: object) -> dict[str, Any]:
        """`set_feed_id`: the contract's checks, then Janus's word, then the service commits."""
        report = self._service.check_set_feed_id(sid, data)
        if not isinstance(report, FeedReport):
            return report
        with self.ledger.verifying(report.feed_id):
            problem = await self._not_seated(report.feed_id)
            if problem is not None:
                log.info(
                    "set_feed_id refused sid=%s feed=%s reason=%r", sid, report.feed_id, problem
                )
                return refused(problem)
            return self._service.set_feed_id(sid, data)  # checks again: we awaited Janus

    async def _not_seated(self, feed_id: FeedId) -> str | None:
        """Why `feed_id` cannot be this sender's feed, or None when Janus lists it."""
        try:
            roster = await self._room.participants()
        except RoomUnavailable as error:
            log.warning("set_feed_id cannot ask Janus feed=%s error=%s", feed_id, error)
            return ROOM_UNAVAILABLE
        if feed_id not in roster.ids() or self.ledger.was_kicked(feed_id):
            return NOT_A_PUBLISHER
        return None
