"""The file source: a recorded elementary stream replayed in real time, looping."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import av
import pytest

from cvh_camera.appliance.sources import h264
from cvh_camera.appliance.sources.base import AccessUnit, SourceError
from cvh_camera.appliance.sources.filesource import FileSource, load_access_units
from cvh_camera.appliance.sources.synthetic import record_test_stream
from tests.support.counter import read_counter

FRAMES = 30
INTERVAL = 10


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recording") / "test.h264"
    frames = record_test_stream(
        path,
        width=320,
        height=240,
        fps=30,
        seconds=FRAMES / 30,
        bitrate=400_000,
        keyframe_interval=INTERVAL,
    )
    assert frames == FRAMES
    return path


async def take(src: FileSource, count: int) -> list[AccessUnit]:
    return [await src.next_unit() for _ in range(count)]


def test_recording_is_an_annexb_stream_of_one_unit_per_frame(recording: Path) -> None:
    units = load_access_units(recording)
    assert len(units) == FRAMES
    assert [n for n, u in enumerate(units) if h264.is_keyframe(u)] == [0, 10, 20]
    assert all(h264.has_parameter_sets(u) for u in units if h264.is_keyframe(u))


async def test_replay_loops_with_increasing_timestamps(recording: Path) -> None:
    before = set(threading.enumerate())
    src = FileSource(recording, width=640, height=480, fps=60)
    await src.start()
    try:
        assert (src.width, src.height) == (320, 240)  # read from the stream
        units = await take(src, 2 * FRAMES + 15)
    finally:
        await src.stop()
    assert set(threading.enumerate()) == before
    stamps = [unit.timestamp_us for unit in units]
    assert stamps == sorted(set(stamps))
    assert all(units[n].data == units[n + FRAMES].data for n in range(FRAMES + 15))
    assert [unit.keyframe for unit in units] == [n % INTERVAL == 0 for n in range(len(units))]
    decoder = av.CodecContext.create("h264", "r")
    counters = [read_counter(f) for u in units for f in decoder.decode(av.Packet(u.data))]
    assert counters == [n % FRAMES for n in range(len(units))]  # decodes across the loop seam


async def test_request_keyframe_jumps_to_the_next_keyframe(recording: Path) -> None:
    src = FileSource(recording, width=320, height=240, fps=60)
    await src.start()
    try:
        await take(src, 3)
        src.request_keyframe()
        unit = await src.next_unit()
    finally:
        await src.stop()
    assert unit.keyframe
    decoder = av.CodecContext.create("h264", "r")
    frames = decoder.decode(av.Packet(unit.data))
    assert [read_counter(frame) for frame in frames] == [INTERVAL]
    assert src.stats.forced_keyframes == 1


async def test_set_bitrate_is_logged_and_ignored(
    recording: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = FileSource(recording, width=320, height=240, fps=30)
    with caplog.at_level(logging.INFO, logger="cvh_camera.appliance.sources.filesource"):
        src.set_bitrate(100_000)
    assert "ignored" in caplog.text


async def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    src = FileSource(tmp_path / "nope.h264", width=320, height=240, fps=30)
    with pytest.raises(SourceError, match=r"cannot read the recording .*nope\.h264"):
        await src.start()


async def test_too_large_file_is_refused(recording: Path) -> None:
    src = FileSource(recording, width=320, height=240, fps=30, max_bytes=1000)
    with pytest.raises(SourceError, match="reads at most"):
        await src.start()


async def test_a_file_without_h264_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)) * 100)
    before = set(threading.enumerate())
    src = FileSource(path, width=320, height=240, fps=30)
    with pytest.raises(SourceError, match=r"no H\.264 keyframe"):
        await src.start()
    assert set(threading.enumerate()) == before


async def test_stop_ends_a_waiting_consumer(recording: Path) -> None:
    src = FileSource(recording, width=320, height=240, fps=1)  # the next slot is 1 s away
    await src.start()
    await src.next_unit()
    waiting = asyncio.create_task(src.next_unit())
    await asyncio.sleep(0.05)
    await src.stop()
    with pytest.raises(SourceError, match="stopped"):
        await asyncio.wait_for(waiting, 2.0)
    with pytest.raises(SourceError, match="not running"):
        await src.next_unit()


async def test_a_late_consumer_skips_slots_but_no_pictures(recording: Path) -> None:
    now = [100.0]
    src = FileSource(recording, width=320, height=240, fps=100, clock=lambda: now[0])
    await src.start()
    try:
        first = await src.next_unit()
        now[0] = 100.105  # the consumer comes back 10.5 slots later
        second = await src.next_unit()
    finally:
        await src.stop()
    units = load_access_units(recording)
    assert (first.data, second.data) == (units[0], units[1])  # the stream has no gap
    assert second.timestamp_us - first.timestamp_us == 100_000  # the latest slot due
    assert src.stats.skipped == 9
