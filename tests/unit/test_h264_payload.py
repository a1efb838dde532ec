"""H.264 access units cut into RTP payloads, checked against aiortc's depacketizer."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from aiortc.codecs.h264 import H264PayloadDescriptor

from cvh_camera.appliance import h264_payload
from cvh_camera.appliance.sources.filesource import load_access_units
from cvh_camera.appliance.sources.synthetic import record_test_stream
from tests.support.counter import read_counter


def nal(nal_type: int, size: int) -> bytes:
    body = bytes((n * 7 + 1) % 251 + 1 for n in range(size - 1))  # never zero
    return bytes((0x60 | nal_type,)) + body


def annexb(*units: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + unit for unit in units)


def depacketize(payloads: list[bytes]) -> bytes:
    """aiortc's receiver side: the payloads back to an Annex-B access unit."""
    return b"".join(H264PayloadDescriptor.parse(payload)[1] for payload in payloads)


def test_small_nal_units_go_whole_and_delimiters_are_dropped() -> None:
    sps, pps, aud, idr = nal(7, 20), nal(8, 6), nal(9, 2), nal(5, 900)
    payloads = h264_payload.payloads(annexb(aud, sps, pps, idr))
    assert payloads == [sps, pps, idr]


def test_three_byte_start_codes_and_trailing_zeros() -> None:
    first, second = nal(1, 40), nal(1, 30)
    unit = b"\x00\x00\x01" + first + b"\x00\x00\x00\x01" + second + b"\x00\x00"
    assert h264_payload.payloads(unit) == [first, second]


@pytest.mark.parametrize("size", [1301, 1302, 2598, 2599, 20_000])
def test_large_nal_units_become_balanced_fu_a_fragments(size: int) -> None:
    big = nal(5, size)
    payloads = h264_payload.payloads(annexb(big))
    assert len(payloads) > 1
    assert all(len(p) <= h264_payload.MAX_PAYLOAD for p in payloads)
    assert max(map(len, payloads)) - min(map(len, payloads)) <= 1
    assert [p[0] & 0x1F for p in payloads] == [28] * len(payloads)
    assert [p[1] & 0xC0 for p in payloads] == [0x80] + [0] * (len(payloads) - 2) + [0x40]
    assert depacketize(payloads) == annexb(big)


def test_empty_and_garbage_give_no_payloads() -> None:
    assert h264_payload.payloads(b"") == []
    assert h264_payload.payloads(b"\x01\x02\x03") == []
    assert h264_payload.payloads(b"\x00\x00\x01") == []


def test_a_real_stream_survives_the_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "test.h264"
    record_test_stream(
        path, width=640, height=480, fps=30, seconds=0.5, bitrate=2_000_000, keyframe_interval=15
    )
    decoder = av.CodecContext.create("h264", "r")
    counters = []
    for unit in load_access_units(path):
        payloads = h264_payload.payloads(unit)
        assert all(len(p) <= h264_payload.MAX_PAYLOAD for p in payloads)
        for frame in decoder.decode(av.Packet(depacketize(payloads))):
            counters.append(read_counter(frame))
    assert counters == list(range(15))
