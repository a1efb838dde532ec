"""The `/janus` proxy's rules, table-style: request → allowed, or refused with a reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import MultiDict

from cvh_camera.server.janus_filter import (
    MAX_BODY,
    VIDEOROOM,
    BadBody,
    JanusRules,
    Where,
    decode_body,
    encode_body,
    transaction_of,
    where_of,
)

ROOM = 1234
RULES = JanusRules(ROOM)
SDP = {"type": "offer", "sdp": "v=0\r\n"}
ROOT, SESSION, HANDLE = Where.ROOT, Where.SESSION, Where.HANDLE


def core(janus: str, **fields: Any) -> dict[str, Any]:
    return {"janus": janus, "transaction": "t1", **fields}


def message(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return core("message", body=body, **fields)


PUBLISHER = {"request": "join", "ptype": "publisher", "room": ROOM, "display": "slot 0"}
SUBSCRIBER = {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": 7}]}

# What the receiver and sender pages (and janus.js) send, and the rest of the allow-list.
ALLOWED = [
    (ROOT, core("create")),
    (SESSION, core("keepalive")),
    (SESSION, core("destroy")),
    (SESSION, core("attach", plugin=VIDEOROOM)),
    (SESSION, core("attach", plugin=VIDEOROOM, opaque_id="page-1")),
    (HANDLE, core("detach")),
    (HANDLE, core("trickle", candidate={"candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"})),
    (HANDLE, core("trickle", candidate={"completed": True})),
    (HANDLE, message(PUBLISHER)),
    (HANDLE, message({**PUBLISHER, "pin": "room-pin"})),
    (HANDLE, message({"request": "join", "ptype": "publisher", "room": ROOM})),
    (HANDLE, message(SUBSCRIBER)),
    (HANDLE, message({**SUBSCRIBER, "pin": "room-pin", "use_msid": True})),
    (HANDLE, message({"request": "publish", "audio": False, "video": True}, jsep=SDP)),
    (HANDLE, message({"request": "configure", "video": True, "keyframe": True})),
    (HANDLE, message({"request": "configure", "streams": [{"mid": "0", "send": False}]})),
    (HANDLE, message({"request": "configure", "substream": 1, "temporal": 0})),
    (HANDLE, message({"request": "start"}, jsep={**SDP, "type": "answer"})),
    (HANDLE, message({"request": "pause"})),
    (HANDLE, message({"request": "leave"})),
    (HANDLE, message({"request": "unpublish"})),
    (HANDLE, message({"request": "switch", "streams": [{"feed": 8, "mid": "0", "sub_mid": "0"}]})),
    (HANDLE, message({"request": "listparticipants", "room": ROOM})),
]


@pytest.mark.parametrize(("where", "payload"), ALLOWED)
def test_what_the_pages_send_is_allowed(where: Where, payload: dict[str, Any]) -> None:
    verdict = RULES.check_post(where, payload)
    assert verdict.allowed, verdict.reason
    assert verdict.reason == ""


SECRET = {"secret": "room-secret"}
REFUSED = [
    # room management, with or without the secrets: the proxy never relays it
    (HANDLE, message({"request": "create", "room": 99, "admin_key": "k"}), "'create' is not"),
    (HANDLE, message({"request": "destroy", "room": ROOM, **SECRET}), "'destroy' is not"),
    (HANDLE, message({"request": "edit", "room": ROOM, "new_pin": "x", **SECRET}), "'edit' is"),
    (HANDLE, message({"request": "kick", "room": ROOM, "id": 7, **SECRET}), "'kick' is not"),
    (HANDLE, message({"request": "moderate", "room": ROOM, "id": 7}), "'moderate' is not"),
    (HANDLE, message({"request": "rtp_forward", "room": ROOM, "host": "1.2.3.4"}), "'rtp_forward'"),
    (HANDLE, message({"request": "stop_rtp_forward", "room": ROOM}), "'stop_rtp_forward'"),
    (HANDLE, message({"request": "listforwarders", "room": ROOM}), "'listforwarders' is"),
    (HANDLE, message({"request": "enable_recording", "room": ROOM}), "'enable_recording'"),
    (HANDLE, message({"request": "allowed", "room": ROOM, "action": "add"}), "'allowed' is"),
    (HANDLE, message({"request": "exists", "room": ROOM}), "'exists' is not allowed"),
    (HANDLE, message({"request": "list"}), "'list' is not allowed"),
    (HANDLE, message({"request": "add_remote_publisher", "room": ROOM}), "'add_remote_publ"),
    (HANDLE, message({"request": "publish_remotely", "room": ROOM}), "'publish_remotely'"),
    (HANDLE, message({"request": "joinandconfigure", "room": ROOM}), "'joinandconfigure'"),
    (HANDLE, message({"request": "subscribe", "streams": []}), "'subscribe' is not"),
    (HANDLE, message({"request": "Destroy", "room": ROOM}), "'Destroy' is not"),  # no case games
    (HANDLE, message({"room": ROOM}), "no videoroom request"),
    (HANDLE, message({"request": ["join"]}), "no videoroom request"),
    # our room only
    (HANDLE, message({**PUBLISHER, "room": ROOM + 1}), "room 1235 is not this server's room"),
    (HANDLE, message({**SUBSCRIBER, "room": 1}), "room 1 is not this server's room"),
    (HANDLE, message({"request": "listparticipants", "room": 7}), "room 7 is not"),
    (HANDLE, message({"request": "listparticipants"}), "needs the room number 1234"),
    (HANDLE, message({**PUBLISHER, "room": str(ROOM)}), "needs the room number"),
    (HANDLE, message({**PUBLISHER, "room": float(ROOM)}), "needs the room number"),
    (HANDLE, message({**PUBLISHER, "room": True}), "needs the room number"),
    (HANDLE, message({k: v for k, v in PUBLISHER.items() if k != "room"}), "needs the room"),
    (HANDLE, message({**PUBLISHER, "ptype": "listener"}), "ptype publisher or subscriber"),
    (HANDLE, message({**PUBLISHER, "ptype": "Publisher"}), "ptype publisher or subscriber"),
    (HANDLE, message({"request": "join", "room": ROOM}), "ptype publisher or subscriber"),
    # fields nobody on a page needs
    (HANDLE, message({**PUBLISHER, "id": 42}), "field 'id' is not allowed in join"),
    (HANDLE, message({**PUBLISHER, "record": True}), "recording is not allowed"),
    (HANDLE, message({**SUBSCRIBER, "secret": "s"}), "field 'secret' is not allowed"),
    (HANDLE, message({"request": "configure", "record": True}), "recording is not allowed"),
    (HANDLE, message({"request": "configure", "filename": "/tmp/x"}), "recording is not"),
    (HANDLE, message({"request": "publish", "record": False}), "recording is not allowed"),
    (HANDLE, message({"request": "configure", "bitrate": 10**7}), "set by the slot server"),
    (HANDLE, message({"request": "configure", "secret": "s"}), "field 'secret' is not"),
    (HANDLE, message({"request": "start", "room": ROOM}), "field 'room' is not allowed"),
    (HANDLE, message({"request": "leave", "admin_key": "k"}), "field 'admin_key' is not"),
    (HANDLE, message({**SUBSCRIBER, "streams": {"feed": 7}}), "streams must be a list"),
    (HANDLE, message({**SUBSCRIBER, "streams": [7]}), "streams must be a list of objects"),
    (HANDLE, message({"request": "publish", "descriptions": "x"}), "descriptions must be"),
    # the message envelope
    (HANDLE, core("message"), "needs a body object"),
    (HANDLE, core("message", body="join"), "needs a body object"),
    (HANDLE, message(PUBLISHER, jsep={"type": "pranswer", "sdp": ""}), "jsep must be"),
    (HANDLE, message(PUBLISHER, jsep="v=0"), "jsep must be"),
    (HANDLE, message(PUBLISHER, plugin="janus.plugin.streaming"), "field 'plugin' is not"),
    # Janus core: plugins, paths and fields
    (SESSION, core("attach", plugin="janus.plugin.streaming"), "'janus.plugin.streaming' is"),
    (SESSION, core("attach", plugin="janus.plugin.admin"), "only janus.plugin.videoroom"),
    (SESSION, core("attach"), "plugin 'null' is not allowed"),
    (SESSION, core("attach", plugin=VIDEOROOM.upper()), "only janus.plugin.videoroom"),
    (ROOT, core("attach", plugin=VIDEOROOM, session_id=1), "'attach' is not allowed on the root"),
    (ROOT, core("create", id=4242), "field 'id' is not allowed in janus create"),
    (ROOT, core("info"), "'info' is not allowed on the root path"),
    (ROOT, core("ping"), "'ping' is not allowed"),
    (ROOT, core("keepalive"), "'keepalive' is not allowed on the root path"),
    (SESSION, core("create"), "'create' is not allowed on the session path"),
    (SESSION, core("claim"), "'claim' is not allowed"),
    (SESSION, core("message", body=PUBLISHER), "'message' is not allowed on the session"),
    (SESSION, core("keepalive", session_id=99), "field 'session_id' is not allowed"),
    (HANDLE, core("hangup"), "'hangup' is not allowed on the handle path"),
    (HANDLE, core("keepalive"), "'keepalive' is not allowed on the handle path"),
    (HANDLE, core("attach", plugin=VIDEOROOM), "'attach' is not allowed on the handle path"),
    (HANDLE, core("detach", handle_id=5), "field 'handle_id' is not allowed"),
    (HANDLE, message(PUBLISHER, apisecret="x"), "field 'apisecret' is not allowed"),
    (Where.INFO, core("info"), "'info' is not allowed on the info path"),
    (ROOT, {"transaction": "t1"}, "no janus request named"),
    (ROOT, {"janus": "create"}, "no transaction"),
    (ROOT, {"janus": "create", "transaction": 5}, "no transaction"),
]


@pytest.mark.parametrize(("where", "payload", "reason"), REFUSED)
def test_everything_else_is_refused(where: Where, payload: dict[str, Any], reason: str) -> None:
    verdict = RULES.check_post(where, payload)
    assert not verdict.allowed
    assert reason in verdict.reason


def test_a_long_name_is_cut_short_in_the_reason() -> None:
    verdict = RULES.check_post(HANDLE, message({"request": "x" * 5000}))
    assert not verdict.allowed
    assert len(verdict.reason) < 120
    assert "xxx…'" in verdict.reason


@pytest.mark.parametrize(
    ("where", "query", "reason"),
    [
        (Where.SESSION, {"maxev": "10", "rid": "1717000000000"}, ""),
        (Where.SESSION, {"maxev": "1"}, ""),
        (Where.SESSION, {}, ""),
        (Where.INFO, {}, ""),
        (Where.INFO, {"rid": "5"}, ""),
        (Where.SESSION, {"maxev": "0"}, "maxev must be a number from 1 to 100"),
        (Where.SESSION, {"maxev": "101"}, "maxev must be"),
        (Where.SESSION, {"maxev": "-1"}, "maxev must be"),
        (Where.SESSION, {"maxev": "ten"}, "maxev must be"),
        (Where.SESSION, {"rid": "abc"}, "rid must be a number"),
        (Where.SESSION, {"maxev": "10", "apisecret": "x"}, "'apisecret' is not allowed"),
        (Where.SESSION, {"token": "x"}, "'token' is not allowed"),
        (Where.INFO, {"maxev": "10"}, "'maxev' is not allowed"),
        (Where.ROOT, {}, "GET is not allowed on the root path"),
        (Where.HANDLE, {}, "GET is not allowed on the handle path"),
    ],
)
def test_get(where: Where, query: dict[str, str], reason: str) -> None:
    verdict = RULES.check_get(where, query)
    assert verdict.allowed == (reason == "")
    assert reason in verdict.reason


def test_a_repeated_query_parameter_is_refused() -> None:
    verdict = RULES.check_get(Where.SESSION, MultiDict([("maxev", "1"), ("maxev", "1000")]))
    assert (verdict.allowed, verdict.reason) == (False, "a query parameter is repeated")


@pytest.mark.parametrize(
    ("tail", "where"),
    [
        ("", Where.ROOT),
        ("info", Where.INFO),
        ("123", Where.SESSION),
        ("123/456", Where.HANDLE),
        ("12345678901234567890/1", Where.HANDLE),
        ("123/456/7", None),
        ("123/", None),
        ("/123", None),
        ("abc", None),
        ("info/1", None),
        ("123456789012345678901", None),
    ],
)
def test_where_of(tail: str, where: Where | None) -> None:
    assert where_of(tail) is where


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, 454),
        (b"{", 400, 454),
        (b"janus=create", 400, 454),
        (b'{"janus": NaN}', 400, 454),
        (b'{"janus": Infinity}', 400, 454),
        (b"\xff\xfe\x00", 400, 454),
        (b"[" * 100_000 + b"]" * 100_000, 413, 413),
        (b"[" * 30_000 + b"]" * 30_000, 400, 454),  # too deep for the decoder
        (b"[]", 400, 455),
        (b'"create"', 400, 455),
        (b"null", 400, 455),
        (b"{}" + b" " * MAX_BODY, 413, 413),
    ],
)
def test_bodies_that_cannot_be_judged(raw: bytes, status: int, code: int) -> None:
    with pytest.raises(BadBody) as caught:
        decode_body(raw)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_a_body_of_max_size_is_decoded() -> None:
    payload = message({"request": "publish"}, jsep={"type": "offer", "sdp": ""})
    padding = MAX_BODY - len(json.dumps(payload).encode())
    payload["jsep"]["sdp"] = "a" * padding
    raw = json.dumps(payload).encode()
    assert len(raw) == MAX_BODY
    assert decode_body(raw) == payload


def test_what_is_forwarded_is_what_was_checked() -> None:
    # with a repeated key, the last one counts in Python and in Janus (jansson) alike; the
    # proxy sends its decoded payload on, so Janus never sees anything but the checked one
    raw = b'{"janus":"message","transaction":"t","body":{"request":"destroy","request":"leave"}}'
    payload = decode_body(raw)
    assert RULES.check_post(HANDLE, payload).allowed
    assert json.loads(encode_body(payload)) == message({"request": "leave"}, transaction="t")
    assert b"destroy" not in encode_body(payload)


@pytest.mark.parametrize(
    ("payload", "transaction"),
    [({"transaction": "abc"}, "abc"), ({"transaction": 5}, None), ({}, None)],
)
def test_transaction_of(payload: dict[str, Any], transaction: str | None) -> None:
    assert transaction_of(payload) == transaction


@pytest.mark.parametrize(
    "body",
    [
        {"request": "join", "ptype": "publisher", "room": ROOM},
        {"request": "publish", "video": True},
        {"request": "unpublish"},
    ],
)
def test_an_edge_lets_pages_watch_only(body: dict[str, Any]) -> None:
    edge = JanusRules(ROOM, subscribe_only=True)
    assert RULES.check_plugin_body(body).allowed
    verdict = edge.check_plugin_body(body)
    assert not verdict.allowed and "publish to the origin" in verdict.reason
    watch = {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": 7}]}
    assert edge.check_plugin_body(watch).allowed
    assert edge.check_plugin_body({"request": "start"}).allowed
