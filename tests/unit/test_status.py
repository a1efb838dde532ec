"""The status file and JSON: state, last error, and nothing secret."""

from __future__ import annotations

from pathlib import Path

from cvh_camera.appliance.status import StatusReporter
from cvh_camera.appliance.supervisor import State, Status


def test_file_follows_state_and_keeps_last_error(tmp_path: Path) -> None:
    path = tmp_path / "status.txt"
    reporter = StatusReporter(path, {"slot": 2, "server": "http://srv:5000"})
    reporter.update(Status(State.RETRYING, "ServerUnreachable: cannot connect", since=0))
    assert path.read_text().startswith("CVH-Camera: waiting to retry — ServerUnreachable")
    reporter.update(Status(State.STREAMING, "feed 42", since=3600, feed_id=42))
    text = path.read_text()
    assert text.splitlines()[0] == "CVH-Camera: streaming — feed 42"
    assert "since: 1970-01-01 01:00:00 UTC" in text
    assert "last error: ServerUnreachable: cannot connect" in text
    assert "slot: 2" in text
    snapshot = reporter.snapshot()
    assert (snapshot["state"], snapshot["feed_id"], snapshot["slot"]) == ("streaming", 42, 2)
    assert not list(tmp_path.glob("*.new"))  # replaced in one step


def test_bad_configuration_names_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "status.txt"
    StatusReporter(path).bad_configuration(
        ["cvh-camera.yaml: tokn: unknown key, did you mean 'token'?"]
    )
    lines = path.read_text().splitlines()
    assert lines[0].startswith("CVH-Camera: bad configuration")
    assert "tokn" in lines[1] and "did you mean 'token'" in lines[1]


def test_unwritable_place_is_logged_not_raised(tmp_path: Path) -> None:
    reporter = StatusReporter(tmp_path / "missing-dir" / "status.txt")
    reporter.update(Status(State.NOT_CONFIGURED, "not configured yet: set slot"))
    assert reporter.snapshot()["last_error"] == "not configured yet: set slot"
