"""The slot service's rules, with recording collaborators (no network)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from cvh_camera.server.service import CommandRejected, SlotService
from cvh_camera.server.slots import SlotCommand, SlotTable

DEFAULT_BITRATE = 128000


@dataclass
class Recorder:
    """Collects what the service asks the outside to do, in order."""

    sent: list[tuple[str, str | None, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    bitrates: list[tuple[int, int, int, int]] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)
    kicked: list[int | str] = field(default_factory=list)

    def broadcast(self, event: str, data: Any = None) -> None:
        self.sent.append((event, None, data))

    def send(self, sid: str, event: str, data: Any) -> None:
        self.sent.append((event, sid, data))

    def disconnect(self, sid: str) -> None:
        self.sent.append(("<disconnect>", sid, None))

    def notify(self, line: str) -> None:
        self.lines.append(line)

    def apply_bitrate(self, slot: int, session_id: int, handle_id: int, bitrate: int) -> None:
        self.bitrates.append((slot, session_id, handle_id, bitrate))

    def edit_pin(self, pin: str) -> None:
        self.pins.append(pin)

    def kick_publisher(self, feed_id: int | str) -> None:
        self.kicked.append(feed_id)

    def events(self) -> list[str]:
        return [event for event, _, _ in self.sent]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def service(rec: Recorder) -> SlotService:
    return SlotService(SlotTable(4, DEFAULT_BITRATE), rec, rec, rec)


def feed(feed_id: int = 77, name: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"feedId": feed_id, "sessionId": 11, "videoroomId": 22}
    if name is not None:
        body["customName"] = name
    return body


def publish(
    service: SlotService, sid: str = "s1", slot: int = 1, token: str = "tok", feed_id: int = 77
) -> None:
    if not service.table[slot].active:
        service.activate_slot(slot, token, None)
    assert service.sender_init(sid, {"slot": slot, "token": token})["success"]
    assert service.set_feed_id(sid, feed(feed_id))["success"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "No data provided"),
        ({}, "No slot provided"),
        ({"slot": None}, "No slot provided"),
        ({"slot": "x1"}, "An invalid camera slot was provided (x1)"),
        ({"slot": True}, "An invalid camera slot was provided (true)"),
        ({"slot": 1.5}, "An invalid camera slot was provided (1.5)"),
        ({"slot": 4}, "This camera slot does not exist"),
        ({"slot": "-1"}, "This camera slot does not exist"),
        ({"slot": 2}, "This camera slot is not activated, contact your moderator"),
        ({"slot": "1"}, "No token provided"),
        ({"slot": 1, "token": "nope"}, "Invalid token, contact your moderator"),
        ({"slot": 1, "token": 5}, "Invalid token, contact your moderator"),
        ({"slot": " 1 ", "token": "tok"}, "Socket authenticated"),
        ({"slot": 1.0, "token": "tok"}, "Socket authenticated"),
    ],
)
def test_sender_init_checks_in_contract_order(
    service: SlotService, payload: object, message: str
) -> None:
    service.activate_slot(1, "tok", None)
    answer = service.sender_init("s1", payload)
    assert answer == {"success": message == "Socket authenticated", "message": message}


def test_set_feed_id_announces_feed_and_acks_with_controller_limit(
    service: SlotService, rec: Recorder
) -> None:
    service.activate_slot(1, "tok", "<b>Desk</b>")
    service.sender_init("s1", {"slot": "1", "token": "tok"})
    answer = service.set_feed_id("s1", feed(name=" Anna <3 "))
    assert answer == {
        "success": True,
        "message": "Successfully set feed id - you are now using this slot",
        "controllerBitrateLimit": DEFAULT_BITRATE,
    }
    assert rec.sent == [
        (
            "new_feed",
            None,
            {
                "slot": 1,
                "feedId": 77,
                "visibility": {"command": "show", "params": []},
                "geometry": {
                    "command": "set_geometry_relative_to_canvas",
                    "params": ["rb", "0", "0", "320", "240"],
                },
                "annotation": "<b>Desk</b>",
            },
        )
    ]
    assert rec.lines == ["new_feed 1", "custom_name 1 Anna &lt;3"]
    assert rec.bitrates == []  # controller limit equals the room default: nothing to change


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (None, "Could not get feed id because no data was provided"),
        ([1, 2], "Invalid data provided - expected an object, got [1, 2]"),
        ({"sessionId": 1, "videoroomId": 2}, "No feed id was provided"),
        ({"feedId": 1, "videoroomId": 2}, "No session id was provided"),
        ({"feedId": 1, "sessionId": "1", "videoroomId": 2}, "Session id has to be a number"),
        ({"feedId": 1, "sessionId": 1}, "No handle id was provided"),
        ({"feedId": 1, "sessionId": 1, "videoroomId": "2"}, "Handle id has to be a number"),
        (
            {"feedId": {"a": 1}, "sessionId": 1, "videoroomId": 2},
            "Feed id has to be a number or a string",
        ),
    ],
)
def test_set_feed_id_refusals_change_nothing(
    service: SlotService, rec: Recorder, payload: object, message: str
) -> None:
    service.activate_slot(1, "tok", None)
    service.sender_init("s1", {"slot": 1, "token": "tok"})
    before = service.table.snapshot()
    assert service.set_feed_id("s1", payload) == {"success": False, "message": message}
    assert service.table.snapshot() == before
    assert rec.sent == [] and rec.lines == []


def test_set_feed_id_needs_sender_init(service: SlotService) -> None:
    answer = service.set_feed_id("s1", feed())
    assert answer["success"] is False and "sender_init" in answer["message"]


def test_second_sender_is_refused_and_same_sender_may_republish(
    service: SlotService, rec: Recorder
) -> None:
    publish(service, "s1")
    service.sender_init("s2", {"slot": 1, "token": "tok"})
    assert service.set_feed_id("s2", feed(90)) == {
        "success": False,
        "message": "There is already somebody using this slot",
    }
    rec.sent.clear()
    assert service.set_feed_id("s1", feed(91))["success"]
    assert rec.events() == ["remove_feed", "new_feed"]
    assert service.query_state()["1"]["feedId"] == 91


def test_feed_id_of_another_slot_is_refused(service: SlotService, rec: Recorder) -> None:
    publish(service, "s1", slot=0)
    service.activate_slot(1, "tok", None)
    service.sender_init("s2", {"slot": 1, "token": "tok"})
    before = service.table.snapshot()
    rec.sent.clear()
    assert service.set_feed_id("s2", feed(77)) == {
        "success": False,
        "message": "This feed id belongs to another slot",
    }
    assert service.table.snapshot() == before and rec.sent == []
    service.disconnected("s2")
    assert rec.kicked == []  # slot 0's camera stays in the room


def test_same_sender_reporting_its_feed_again_keeps_it_in_the_room(
    service: SlotService, rec: Recorder
) -> None:
    publish(service, "s1")
    assert service.set_feed_id("s1", feed())["success"]
    assert rec.kicked == []
    assert service.query_state()["1"]["feedId"] == 77


def test_refreshed_token_blocks_old_sender(service: SlotService) -> None:
    service.activate_slot(1, "old", None)
    service.sender_init("s1", {"slot": 1, "token": "old"})
    service.refresh_token(1, "new")
    assert service.set_feed_id("s1", feed())["message"] == (
        "The provided token is not valid anymore - the feed is not transmitted"
    )
    assert service.sender_init("s2", {"slot": 1, "token": "new"})["success"]
    assert service.set_feed_id("s2", feed())["success"]


def test_disconnect_clears_feed_but_keeps_slot(service: SlotService, rec: Recorder) -> None:
    publish(service, "s1")
    rec.sent.clear()
    rec.lines.clear()
    service.disconnected("s1")
    assert rec.sent == [("remove_feed", None, {"slot": 1})]
    assert rec.lines == ["remove_feed 1"]
    assert rec.kicked == [77]  # its Janus publisher must not keep the seat
    assert service.table[1].active and service.query_state() == {}


def test_deactivate_kicks_sender_and_resets_slot(service: SlotService, rec: Recorder) -> None:
    publish(service, "s1")
    service.set_controller_bitrate_limit(1, 50000)
    service.set_annotation(1, "note")
    rec.sent.clear()
    service.deactivate_slot(1)
    assert rec.sent == [("remove_feed", None, {"slot": 1}), ("<disconnect>", "s1", None)]
    slot = service.table[1]
    assert (slot.active, slot.annotation, slot.controller_bitrate_limit) == (
        False,
        None,
        DEFAULT_BITRATE,
    )
    assert service.sender_init("s3", {"slot": 1, "token": "tok"})["message"] == (
        "This camera slot is not activated, contact your moderator"
    )


@pytest.mark.parametrize(
    ("controller", "user", "effective"),
    [(0, 0, 0), (0, 300, 300), (500, 0, 500), (500, 300, 300), (500, 700, 500)],
)
def test_effective_bitrate_rule(
    service: SlotService, rec: Recorder, controller: int, user: int, effective: int
) -> None:
    publish(service, "s1")
    service.set_controller_bitrate_limit(1, controller)
    service.set_bitrate_limit("s1", {"bitrateLimit": user})
    assert service.table[1].effective_bitrate == effective
    if rec.bitrates:
        assert rec.bitrates[-1] == (1, 11, 22, effective)


def test_controller_limit_reaches_sender_and_janus(service: SlotService, rec: Recorder) -> None:
    publish(service, "s1")
    rec.sent.clear()
    service.set_controller_bitrate_limit(1, 64000)
    assert rec.sent == [("new_controller_bitrate_limit", "s1", {"bitrateLimit": 64000})]
    assert rec.bitrates == [(1, 11, 22, 64000)]
    service.set_controller_bitrate_limit(1, 64000)  # unchanged effective value: no request
    assert rec.bitrates == [(1, 11, 22, 64000)]


def test_limit_set_before_feed_is_applied_when_feed_arrives(
    service: SlotService, rec: Recorder
) -> None:
    service.activate_slot(1, "tok", None)
    service.set_controller_bitrate_limit(1, 90000)
    assert rec.bitrates == [] and rec.sent == []
    service.sender_init("s1", {"slot": 1, "token": "tok"})
    assert service.set_feed_id("s1", feed())["controllerBitrateLimit"] == 90000
    assert rec.bitrates == [(1, 11, 22, 90000)]


@pytest.mark.parametrize(
    ("sid", "payload", "message"),
    [
        ("s2", {"bitrateLimit": 1}, "You are not the sender of this slot"),
        ("s1", None, "Got no data in the request"),
        ("s1", {}, "Got no bitrate limit in the request"),
        ("s1", {"bitrateLimit": "9"}, "The provided bitrate is not a number"),
        ("s1", {"bitrateLimit": True}, "The provided bitrate is not a number"),
        ("s1", {"bitrateLimit": -5}, "Your bitrate limit was updated"),
    ],
)
def test_set_bitrate_limit_checks(
    service: SlotService, sid: str, payload: object, message: str
) -> None:
    publish(service, "s1")
    service.sender_init("s2", {"slot": 1, "token": "tok"})
    assert service.set_bitrate_limit(sid, payload)["message"] == message
    assert service.table[1].user_bitrate_limit == 0  # negative counts as 0


def test_set_bitrate_limit_without_feed(service: SlotService) -> None:
    service.activate_slot(1, "tok", None)
    service.sender_init("s1", {"slot": 1, "token": "tok"})
    assert service.set_bitrate_limit("s1", {"bitrateLimit": 5})["message"] == (
        "There is no camera feed being transmitted"
    )


def test_commands_and_annotations_broadcast_only_with_feed(
    service: SlotService, rec: Recorder
) -> None:
    service.activate_slot(1, "tok", None)
    hide = SlotCommand("hide")
    service.set_slot_command(1, hide, geometry=False)
    service.set_annotation(1, "a")
    assert rec.sent == []
    service.sender_init("s1", {"slot": 1, "token": "tok"})
    service.set_feed_id("s1", feed())
    assert rec.sent[-1][2]["visibility"] == {"command": "hide", "params": []}
    assert rec.sent[-1][2]["annotation"] == "a"
    geometry = SlotCommand("set_geometry_relative_to_window", ("lt", "1", "2", "3", "4"))
    service.set_slot_command(1, geometry, geometry=True)
    service.remove_annotation(1)
    assert rec.sent[-2:] == [
        ("command", None, {"slot": 1, **geometry.to_wire()}),
        ("remove_annotation", None, {"slot": 1}),
    ]


def test_custom_name_cannot_forge_notify_lines(service: SlotService, rec: Recorder) -> None:
    publish(service, "s1")
    service.change_name("s1", {"newName": "x\nnew_feed 3"})
    assert rec.lines[-1] == "custom_name 1 x new_feed 3"
    assert all("\n" not in line for line in rec.lines)


def test_controller_rejections(service: SlotService) -> None:
    service.activate_slot(1, "tok", None)
    with pytest.raises(CommandRejected):
        service.activate_slot(1, "other", None)
    with pytest.raises(CommandRejected):
        service.refresh_token(2, "x")
    with pytest.raises(CommandRejected):
        service.deactivate_slot(2)
    with pytest.raises(CommandRejected):
        service.set_controller_bitrate_limit(1, -1)
    assert service.table[1].token_matches("tok")


def test_janus_loss_removes_every_feed(service: SlotService, rec: Recorder) -> None:
    publish(service, "s1", slot=0)
    publish(service, "s2", slot=3, feed_id=78)
    rec.sent.clear()
    service.janus_lost()
    assert rec.sent == [("remove_feed", None, {"slot": 0}), ("remove_feed", None, {"slot": 3})]
    assert rec.kicked == []  # the room died with Janus: nobody to kick
    assert service.query_state() == {}
