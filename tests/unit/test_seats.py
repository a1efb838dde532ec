"""Who keeps a seat in the room: the pure ledger, and the guard with a fake room (no network)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cvh_camera.server.janus_room import Participant, RoomUnavailable, Roster
from cvh_camera.server.seats import (
    NOT_A_PUBLISHER,
    ROOM_UNAVAILABLE,
    SeatGuard,
    SeatLedger,
    unverified,
)
from cvh_camera.server.service import SlotService
from cvh_camera.server.slots import FeedId, SlotTable
from tests.unit.test_service import Recorder

GRACE = 10.0


def roster(*ids: FeedId, generation: int = 1) -> Roster:
    return Roster(generation, tuple(Participant(i, f"p{i}", True) for i in ids))


def kicked(due: list[Participant]) -> list[FeedId]:
    return [p.id for p in due]


def test_unverified_is_unclaimed_and_past_the_grace() -> None:
    people = roster(1, 2, 3).participants
    first_seen = {1: 0.0, 2: 0.0, 3: 5.0}
    assert kicked(unverified(people, {2}, first_seen, 10.0, GRACE)) == [1]
    assert kicked(unverified(people, set(), first_seen, 9.9, GRACE)) == []
    assert kicked(unverified(people, set(), first_seen, 15.0, GRACE)) == [1, 2, 3]


def test_grace_counts_from_first_seen_and_a_kick_is_sent_once() -> None:
    ledger = SeatLedger(GRACE)
    assert ledger.review(roster(1), set(), 100.0) == []
    assert ledger.review(roster(1, 2), set(), 105.0) == []
    assert kicked(ledger.review(roster(1, 2), set(), 110.0)) == [1]
    assert ledger.was_kicked(1)
    assert ledger.review(roster(1, 2), set(), 111.0) == []  # kick in flight: not again
    assert kicked(ledger.review(roster(2), set(), 115.0)) == [2]
    assert ledger.review(roster(), set(), 116.0) == [] and not ledger.was_kicked(1)


def test_claimed_and_verifying_feeds_are_never_kicked() -> None:
    ledger = SeatLedger(GRACE)
    ledger.review(roster(1, 2, 3), set(), 0.0)
    with ledger.verifying(3), ledger.verifying(3):
        assert kicked(ledger.review(roster(1, 2, 3), {1}, 50.0)) == [2]
    assert kicked(ledger.review(roster(1, 3), {1}, 51.0)) == [3]  # its check failed


def test_late_claim_within_grace_keeps_the_seat() -> None:
    ledger = SeatLedger(GRACE)
    ledger.review(roster(7), set(), 0.0)
    assert ledger.review(roster(7), set(), 9.9) == []
    assert ledger.review(roster(7), {7}, 10.5) == []
    assert ledger.review(roster(7), {7}, 500.0) == []


def test_a_released_claim_is_kicked_at_once() -> None:
    ledger = SeatLedger(GRACE)
    ledger.review(roster(7), {7}, 0.0)
    assert kicked(ledger.review(roster(7), set(), 60.0)) == [7]


def test_one_that_left_and_came_back_starts_a_new_grace() -> None:
    ledger = SeatLedger(GRACE)
    ledger.review(roster(7), set(), 0.0)
    ledger.review(roster(), set(), 5.0)
    ledger.review(roster(7), set(), 9.0)
    assert ledger.review(roster(7), set(), 12.0) == []
    assert ledger.first_seen(7) == 9.0


def test_a_new_room_forgets_the_old_one() -> None:
    ledger = SeatLedger(GRACE)
    ledger.review(roster(7), set(), 0.0)
    assert ledger.review(roster(7, generation=2), set(), 20.0) == []
    assert ledger.first_seen(7) == 20.0


def test_a_failed_kick_is_tried_again() -> None:
    ledger = SeatLedger(GRACE)
    ledger.review(roster(7), set(), 0.0)
    assert kicked(ledger.review(roster(7), set(), 10.0)) == [7]
    ledger.kick_failed(7)
    assert kicked(ledger.review(roster(7), set(), 11.0)) == [7]


# ------------------------------------------------------------------ the guard


class FakeRoom:
    """The room as the guard sees it; `gate` holds `participants()` to order events."""

    def __init__(self, *ids: int) -> None:
        self.ids: list[FeedId] = list(ids)
        self.generation = 1
        self.kicks: list[FeedId] = []
        self.available = True
        self.gate: asyncio.Event | None = None

    async def participants(self) -> Roster:
        if self.gate is not None:
            await self.gate.wait()
        if not self.available:
            raise RoomUnavailable("room is down")
        return roster(*self.ids, generation=self.generation)

    async def kick(self, feed_id: FeedId) -> None:
        self.kicks.append(feed_id)
        self.ids.remove(feed_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard_for(room: FakeRoom, clock: Clock, **options: Any) -> tuple[SeatGuard, SlotService]:
    rec = Recorder()
    service = SlotService(SlotTable(2, 128000), rec, rec, rec)
    for slot in (0, 1):
        service.activate_slot(slot, f"tok{slot}", None)
        assert service.sender_init(f"s{slot}", {"slot": slot, "token": f"tok{slot}"})["success"]
    return SeatGuard(room, service, grace=GRACE, clock=clock, **options), service


def report(feed_id: Any) -> dict[str, Any]:
    return {"feedId": feed_id, "sessionId": 1, "videoroomId": 2}


async def test_guard_kicks_strangers_after_the_grace_and_keeps_claimed_feeds() -> None:
    room, clock = FakeRoom(1, 2), Clock()
    guard, _ = guard_for(room, clock)
    await guard.check()
    assert (await guard.set_feed_id("s0", report(1)))["success"]
    clock.now += GRACE
    await guard.check()
    assert room.kicks == [2] and room.ids == [1] and guard.checks == 2


async def test_guard_refuses_non_participants_kicked_feeds_and_other_slots_feeds() -> None:
    room, clock = FakeRoom(1, 2), Clock()
    guard, service = guard_for(room, clock)
    assert await guard.set_feed_id("s0", report(99)) == {
        "success": False,
        "message": NOT_A_PUBLISHER,
    }
    assert await guard.set_feed_id("s0", report("1")) == {  # Janus's ids are numbers
        "success": False,
        "message": NOT_A_PUBLISHER,
    }
    assert (await guard.set_feed_id("s0", report(1)))["success"]
    assert (await guard.set_feed_id("s1", report(1)))["message"] == (
        "This feed id belongs to another slot"
    )
    await guard.check()
    clock.now += GRACE
    room.kick = _never  # type: ignore[method-assign]  # the kick is slow: 2 still listed
    await guard.check()
    assert (await guard.set_feed_id("s1", report(2)))["message"] == NOT_A_PUBLISHER
    assert service.table.claimed() == {1: 0}


async def _never(feed_id: FeedId) -> None:
    pass


async def test_guard_keeps_the_contract_order_and_messages() -> None:
    guard, _ = guard_for(FakeRoom(1), Clock())
    assert await guard.set_feed_id("nobody", report(1)) == {
        "success": False,
        "message": "This socket is not authenticated as a sender - send sender_init first",
    }
    assert (await guard.set_feed_id("s0", None))["message"] == (
        "Could not get feed id because no data was provided"
    )
    assert (await guard.set_feed_id("s0", {"feedId": 99}))["message"] == (
        "No session id was provided"
    )


async def test_guard_refuses_while_the_room_is_down() -> None:
    room = FakeRoom(1)
    room.available = False
    guard, service = guard_for(room, Clock())
    assert await guard.set_feed_id("s0", report(1)) == {
        "success": False,
        "message": ROOM_UNAVAILABLE,
    }
    await guard.check()
    assert guard.checks == 0 and service.table.claimed() == {}


async def test_a_check_never_kicks_a_feed_being_verified() -> None:
    room, clock = FakeRoom(5), Clock()
    guard, service = guard_for(room, clock)
    await guard.check()
    clock.now += GRACE - 0.1
    room.gate = asyncio.Event()
    verify = asyncio.create_task(guard.set_feed_id("s0", report(5)))
    await asyncio.sleep(0)  # the verification now waits for Janus
    clock.now += 1.0
    room.gate.set()
    await guard.check()
    assert (await verify)["success"]
    assert room.kicks == [] and service.table.claimed() == {5: 0}


async def test_state_changed_while_janus_was_asked_is_checked_again() -> None:
    room = FakeRoom(5)
    guard, service = guard_for(room, Clock())
    room.gate = asyncio.Event()
    verify = asyncio.create_task(guard.set_feed_id("s0", report(5)))
    await asyncio.sleep(0)
    service.refresh_token(0, "new")
    room.gate.set()
    assert (await verify)["message"] == (
        "The provided token is not valid anymore - the feed is not transmitted"
    )
    assert service.table.claimed() == {}


@pytest.mark.parametrize("failure", [RoomUnavailable("gone"), RuntimeError("bug")])
async def test_run_survives_failures(failure: Exception) -> None:
    room, clock = FakeRoom(), Clock()
    calls = 0

    async def participants() -> Roster:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise failure
        return roster()

    room.participants = participants  # type: ignore[method-assign]
    slept = asyncio.Event()

    async def sleep(seconds: float) -> None:
        if calls >= 2:
            slept.set()
            await asyncio.Event().wait()

    guard, _ = guard_for(room, clock, sleep=sleep)
    task = asyncio.create_task(guard.run())
    await asyncio.wait_for(slept.wait(), 5)
    task.cancel()
    assert guard.checks == 1
