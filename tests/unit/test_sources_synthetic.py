"""The test pattern, the libx264 encoder and the synthetic source, with real PyAV encode/decode."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import av
import pytest

from cvh_camera.appliance.sources import create_source, h264
from cvh_camera.appliance.sources.base import AccessUnit, SourceError, VideoSource
from cvh_camera.appliance.sources.pattern import TestPattern
from cvh_camera.appliance.sources.synthetic import SyntheticSource, X264Encoder
from tests.support.counter import read_counter


class Decoder:
    def __init__(self) -> None:
        self._context = av.CodecContext.create("h264", "r")

    def decode(self, data: bytes) -> list[av.VideoFrame]:
        frames = self._context.decode(av.Packet(data))
        return [frame for frame in frames if isinstance(frame, av.VideoFrame)]


def source(
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    bitrate: int = 500_000,
    keyframe_interval: int = 10,
) -> SyntheticSource:
    return SyntheticSource(
        width=width, height=height, fps=fps, bitrate=bitrate, keyframe_interval=keyframe_interval
    )


async def take(src: SyntheticSource, count: int) -> list[AccessUnit]:
    return [await src.next_unit() for _ in range(count)]


@pytest.mark.parametrize(("width", "height"), [(160, 120), (320, 240), (642, 362), (1280, 720)])
def test_counter_blocks_read_back_from_raw_frames(width: int, height: int) -> None:
    pattern = TestPattern(width, height)
    for counter in (0, 1, 123_456_789, 2**32 - 1):
        assert read_counter(pattern.frame(counter)) == counter


def test_read_counter_says_none_without_blocks() -> None:
    frame = av.VideoFrame(320, 240, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes([60]) * plane.buffer_size)
    assert read_counter(frame) is None
    assert read_counter(av.VideoFrame(100, 80, "yuv420p")) is None


def test_pattern_rejects_sizes_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match="at least 160x120"):
        TestPattern(120, 90)


def encoder(bitrate: int = 500_000, keyframe_interval: int = 10) -> X264Encoder:
    enc = X264Encoder(
        width=320, height=240, fps=30, bitrate=bitrate, keyframe_interval=keyframe_interval
    )
    enc.open()
    return enc


def encode_frames(
    enc: X264Encoder, counters: range, *, force: frozenset[int] = frozenset()
) -> list[bytes]:
    pattern = TestPattern(320, 240)
    units = []
    for n in counters:
        frame = pattern.frame(n)
        frame.pts = n * 33_333
        units += [data for data, _pts in enc.encode(frame, force_keyframe=n in force)]
    return units


def test_x264_gives_constrained_baseline_annexb_with_sps_pps_on_every_idr() -> None:
    units = encode_frames(encoder(keyframe_interval=10), range(25), force=frozenset({13}))
    assert len(units) == 25  # zero latency: one unit per frame, at once
    assert all(unit.startswith(h264.START_CODE) for unit in units)
    keyframes = [n for n, unit in enumerate(units) if h264.is_keyframe(unit)]
    assert keyframes == [0, 10, 13, 23]  # periodic, forced, and the period restarts there
    for n, unit in enumerate(units):
        assert h264.has_parameter_sets(unit) == (n in keyframes)
    sps = next(nal for nal in h264.nal_units(units[0]) if h264.nal_type(nal) == h264.NAL_SPS)
    # profile_idc 66 with constraint_set0 and constraint_set1: constrained baseline, 42c0xx
    assert h264.profile_level_id(sps)[:4] == "42c0"
    assert not any(h264.nal_type(nal) == 3 for unit in units for nal in h264.nal_units(unit))


def test_counter_survives_compression() -> None:
    units = encode_frames(encoder(bitrate=100_000), range(40, 60))
    decoder = Decoder()
    counters = [read_counter(frame) for unit in units for frame in decoder.decode(unit)]
    assert counters == list(range(40, 60))


def test_bitrate_change_reopens_the_encoder_with_an_idr() -> None:
    enc = encoder(bitrate=1_500_000, keyframe_interval=300)
    high = encode_frames(enc, range(60))
    enc.set_bitrate(150_000)
    low = encode_frames(enc, range(60, 120))
    assert h264.is_keyframe(low[0]) and h264.has_parameter_sets(low[0])
    assert not any(h264.is_keyframe(unit) for unit in low[1:])
    high_rate = sum(map(len, high[30:]))
    low_rate = sum(map(len, low[30:]))
    assert high_rate > 3 * low_rate


async def test_source_produces_decodable_units_with_increasing_counters() -> None:
    before = set(threading.enumerate())
    src = source(keyframe_interval=10)
    await src.start()
    try:
        units = await take(src, 25)
    finally:
        await src.stop()
    assert set(threading.enumerate()) == before  # the worker thread was joined
    assert units[0].keyframe and h264.has_parameter_sets(units[0].data)
    assert all(unit.data.startswith(h264.START_CODE) for unit in units)
    assert all(h264.has_parameter_sets(unit.data) for unit in units if unit.keyframe)
    assert [unit.keyframe for unit in units] == [n % 10 == 0 for n in range(25)]
    stamps = [unit.timestamp_us for unit in units]
    assert stamps == sorted(set(stamps))
    decoder = Decoder()
    frames = [frame for unit in units for frame in decoder.decode(unit.data)]
    assert {(frame.width, frame.height) for frame in frames} == {(320, 240)}
    counters = [read_counter(frame) or 0 for frame in frames]
    assert counters == sorted(set(counters))  # increasing; gaps only where slots were skipped
    assert counters[-1] - counters[0] - 24 <= src.stats.skipped
    assert src.stats.produced >= 25 and src.stats.keyframes >= 3


async def test_request_keyframe_gives_a_keyframe_within_a_couple_of_frames() -> None:
    src = source(keyframe_interval=1000, fps=60)
    await src.start()
    try:
        await take(src, 3)
        src.request_keyframe()
        following = await take(src, 3)
    finally:
        await src.stop()
    assert any(unit.keyframe and h264.has_parameter_sets(unit.data) for unit in following)
    assert src.stats.forced_keyframes == 1


async def test_set_bitrate_applies_at_the_next_frame() -> None:
    src = source(keyframe_interval=1000, fps=60)
    await src.start()
    try:
        await take(src, 3)
        src.set_bitrate(200_000)
        following = await take(src, 3)
    finally:
        await src.stop()
    assert any(unit.keyframe for unit in following)


async def test_pacing_follows_the_wall_clock() -> None:
    src = source(fps=20)
    await src.start()
    try:
        first = await src.next_unit()
        first_at = time.monotonic()
        units = await take(src, 20)
        elapsed = time.monotonic() - first_at
    finally:
        await src.stop()
    span = (units[-1].timestamp_us - first.timestamp_us) / 1e6
    assert 0.9 < span < 1.5  # 20 slots of 50 ms, a few more if the machine was busy
    assert abs(span - elapsed) < 0.3  # produced in real time, not in bursts
    gaps = {b.timestamp_us - a.timestamp_us for a, b in itertools.pairwise(units)}
    assert all(abs(gap % 50_000) <= 1 or abs(gap % 50_000 - 50_000) <= 1 for gap in gaps)


async def test_1280x720_decodes_at_full_size() -> None:
    src = source(width=1280, height=720, bitrate=2_000_000)
    await src.start()
    try:
        units = await take(src, 3)
    finally:
        await src.stop()
    decoder = Decoder()
    frames = [frame for unit in units for frame in decoder.decode(unit.data)]
    assert [(f.width, f.height) for f in frames] == [(1280, 720)] * 3
    assert [read_counter(frame) for frame in frames] == [0, 1, 2]


async def test_stop_is_idempotent_and_the_source_can_restart() -> None:
    src = source()
    with pytest.raises(SourceError, match="not started"):
        await src.next_unit()
    await src.start()
    with pytest.raises(SourceError, match="already running"):
        await src.start()
    await src.stop()
    await src.stop()
    with pytest.raises(SourceError, match="stopped"):
        await src.next_unit()
    await src.start()
    try:
        assert (await src.next_unit()).keyframe
    finally:
        await src.stop()


def test_create_source_knows_its_kinds(tmp_path: Path) -> None:
    def create(kind: str, *, file: Path | None = None, width: int = 320) -> VideoSource:
        return create_source(
            kind, width=width, height=240, fps=30, bitrate=1, keyframe_interval=30, file=file
        )

    assert create("test").name == "test"
    assert create("file", file=tmp_path / "x.h264").name == "file"
    assert create("picamera2").name == "picamera2"
    with pytest.raises(ValueError, match="picamera2, test, file"):
        create("webcam")
    with pytest.raises(ValueError, match=r"camera\.file"):
        create("file")
    with pytest.raises(ValueError, match="even"):
        create("test", width=321)
