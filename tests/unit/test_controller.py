"""Controller lines: parsing, effects, and bad lines that change nothing."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvh_camera.server.controller import ControllerInput, LineSplitter, handle_line, redact
from cvh_camera.server.service import SlotService
from cvh_camera.server.slots import SlotTable
from tests.unit.test_service import Recorder


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def service(rec: Recorder) -> SlotService:
    return SlotService(SlotTable(4, 128000), rec, rec, rec)


def test_activate_with_annotation_words(service: SlotService) -> None:
    assert handle_line(service, "activate_slot 2 s3cret <i>Room  A</i>\n")
    slot = service.table[2]
    assert slot.token_matches("s3cret")
    assert slot.annotation == "<i>Room  A</i>"


def test_every_command_applies(service: SlotService, rec: Recorder) -> None:
    lines = [
        "activate_slot 0 tok",
        "refresh_token 0 tok2",
        "set_annotation 0 hello world",
        "remove_annotation 0",
        "set_bitrate_limit 0 64000",
        "hide 0",
        "show 0",
        "set_geometry_relative_to_canvas 0 lt 0 0 640 480",
        "set_geometry_relative_to_window 0 rb 10 10 320 240 3",
        "edit_pin 4321",
        "deactivate_slot 0",
    ]
    for line in lines:
        assert handle_line(service, line), line
    assert rec.pins == ["4321"]
    slot = service.table[0]
    assert slot.geometry.params == ("rb", "10", "10", "320", "240", "3")
    assert slot.visibility.command == "show"
    assert not slot.active


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "bogus 1",
        "hide",
        "hide x",
        "hide 1.5",
        "hide 9",
        "hide -1",
        "activate_slot 1",
        "refresh_token 1 new",  # slot not active
        "deactivate_slot 1",
        "set_annotation 1",
        "set_bitrate_limit 0 fast",
        "set_bitrate_limit 0 -5",
        "set_geometry_relative_to_canvas 0 xx 0 0 1 1",
        "set_geometry_relative_to_canvas 0 lt 0 0 1",
        "set_geometry_relative_to_canvas 0 lt a b c d",
        "edit_pin",
        "activate_slot 0 other",  # already active
    ],
)
def test_bad_lines_change_nothing(service: SlotService, rec: Recorder, line: str) -> None:
    service.activate_slot(0, "tok", None)
    before = service.table.snapshot()
    assert not handle_line(service, line)
    assert service.table.snapshot() == before
    assert rec.sent == [] and rec.pins == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_lines_never_raise(line: str) -> None:
    rec = Recorder()
    service = SlotService(SlotTable(4, 128000), rec, rec, rec)
    handle_line(service, line)  # must not raise, whatever it is


def test_tokens_are_masked_in_logs(service: SlotService, caplog: pytest.LogCaptureFixture) -> None:
    token = "verysecrettoken123"
    with caplog.at_level(logging.DEBUG):
        handle_line(service, f"activate_slot 1 {token}")
        handle_line(service, f"activate_slot 1 {token}")  # rejected: logged with the line
        handle_line(service, f"refresh_token 1 {token}x")
        handle_line(service, "edit_pin 98765432")
    assert token not in caplog.text and "98765432" not in caplog.text
    assert redact(f"activate_slot 1 {token} note") != f"activate_slot 1 {token} note"


def test_splitter_drops_overlong_line_whole() -> None:
    got: list[str] = []
    splitter = LineSplitter(got.append)
    splitter.feed(b"hide 1\n" + b"x" * 70000)
    splitter.feed(b"yy\nshow 1\npartial")
    splitter.close()
    assert got == ["hide 1", "show 1", "partial"]


async def test_controller_input_reads_a_pipe_until_eof() -> None:
    read_fd, write_fd = os.pipe()
    got: list[str] = []
    with os.fdopen(read_fd, "rb", buffering=0) as stream:
        task = asyncio.create_task(ControllerInput(stream, got.append).run())
        os.write(write_fd, "hide 1\nset_annotation 2 ä\n".encode())
        os.close(write_fd)
        await asyncio.wait_for(task, 5)
    assert got == ["hide 1", "set_annotation 2 ä"]


async def test_controller_input_reads_a_regular_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "commands.txt"
    path.write_bytes(b"activate_slot 0 t\nhide 0")
    got: list[str] = []
    with path.open("rb") as stream:
        await asyncio.wait_for(ControllerInput(stream, got.append).run(), 5)
    assert got == ["activate_slot 0 t", "hide 0"]
