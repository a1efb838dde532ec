"""server.receivers: which Janus a receiver page is told to use."""

from __future__ import annotations

import pytest

from cvh_camera.server.receivers import ReceiverSpread

EDGES = ["/janus-edge/0", "/janus-edge/1", "https://e2.example/janus"]


def test_without_edges_everyone_gets_the_origin() -> None:
    receivers = ReceiverSpread("/janus", [], lambda: [])
    assert receivers.query("a", None) == {
        "success": True, "message": "Use the origin", "janusUrl": "/janus", "edge": None,
    }  # fmt: skip
    assert receivers.counts() == {"origin": 1}


def test_the_least_loaded_usable_edge_and_counts_released_on_disconnect() -> None:
    usable = [0, 1, 2]
    receivers = ReceiverSpread("/janus", EDGES, lambda: usable)
    given = [receivers.query(sid, {})["edge"] for sid in "abcd"]
    assert given == [0, 1, 2, 0]
    assert receivers.query("d", {})["edge"] == 0  # asking again does not count twice
    receivers.forget("b")
    assert receivers.query("e", None)["janusUrl"] == "/janus-edge/1"
    usable.remove(1)  # edge 1 went down
    assert receivers.query("f", {})["edge"] == 2
    assert receivers.counts() == {"origin": 0, "0": 2, "1": 1, "2": 2}


def test_avoided_edges_are_skipped_unless_nothing_else_is_up() -> None:
    receivers = ReceiverSpread("/janus", EDGES[:2], lambda: [0, 1])
    assert receivers.query("a", {"avoid": [0]})["edge"] == 1
    assert receivers.query("b", {"avoid": [0, 1]})["edge"] in (0, 1)


def test_no_usable_edge_falls_back_to_the_origin() -> None:
    receivers = ReceiverSpread("/janus", EDGES[:2], lambda: [])
    assert receivers.query("a", {})["janusUrl"] == "/janus"
    assert receivers.counts() == {"origin": 1, "0": 0, "1": 0}


@pytest.mark.parametrize("data", [{"avoid": "0"}, {"avoid": [True]}, {"avoid": [0.5]}, [1], 7,
                                  {"avoid": list(range(65))}])  # fmt: skip
def test_a_bad_payload_is_refused_and_changes_nothing(data: object) -> None:
    receivers = ReceiverSpread("/janus", EDGES[:1], lambda: [0])
    receivers.query("a", {})
    answer = receivers.query("a", data)
    assert answer == {"success": False, "message": "avoid must be a list of edge numbers"}
    assert receivers.counts() == {"origin": 0, "0": 1}
