"""Annex-B helpers: NAL splitting, access-unit grouping, keyframes, parameter sets."""

from __future__ import annotations

import pytest

from cvh_camera.appliance.sources import h264

SPS = bytes.fromhex("6742c01fda01")
PPS = bytes.fromhex("68ce3c80")
SEI = bytes.fromhex("06050102")
AUD = bytes.fromhex("0910")
IDR = bytes.fromhex("65888401")  # first_mb_in_slice == 0 (0x88 has its top bit set)
IDR_2ND_SLICE = bytes.fromhex("65 44 55 66")  # first_mb_in_slice != 0 (0x44: top bit clear)
P = bytes.fromhex("419a0203")
P_2ND_SLICE = bytes.fromhex("41 22 33")


def annexb(*nals: bytes, short: bool = False) -> bytes:
    code = b"\x00\x00\x01" if short else b"\x00\x00\x00\x01"
    return b"".join(code + nal for nal in nals)


def test_split_handles_3_and_4_byte_start_codes_and_trailing_zeros() -> None:
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00" + b"\x00\x00\x01" + IDR
    assert h264.nal_units(data) == [SPS, PPS, IDR]
    assert all(isinstance(nal, memoryview) for nal in h264.nal_units(data))  # views, no copies
    assert h264.nal_units(b"") == []
    assert h264.nal_units(b"garbage without start code") == []


def test_types_keyframes_and_parameter_sets() -> None:
    key = annexb(SPS, PPS, IDR)
    assert h264.nal_types(key) == [7, 8, 5]
    assert h264.is_keyframe(key)
    assert h264.has_parameter_sets(key)
    assert not h264.is_keyframe(annexb(P))
    assert not h264.has_parameter_sets(annexb(SPS, IDR))
    assert h264.has_slice(annexb(P)) and not h264.has_slice(annexb(SPS, PPS))


def test_join_uses_4_byte_start_codes() -> None:
    assert h264.join_nals([SPS, PPS]) == b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS


def test_access_units_split_at_parameter_sets_and_first_slices() -> None:
    stream = annexb(SPS, PPS, SEI, IDR, P, P, SPS, PPS, IDR, P, short=True)
    units = h264.split_access_units(stream)
    assert [h264.nal_types(u) for u in units] == [[7, 8, 6, 5], [1], [1], [7, 8, 5], [1]]
    assert all(u.startswith(h264.START_CODE) for u in units)


def test_access_units_keep_slices_of_one_picture_together() -> None:
    stream = annexb(SPS, PPS, IDR, IDR_2ND_SLICE, P, P_2ND_SLICE, P)
    units = h264.split_access_units(stream)
    assert [h264.nal_types(u) for u in units] == [[7, 8, 5, 5], [1, 1], [1]]


def test_access_units_split_at_aud() -> None:
    stream = annexb(AUD, SPS, PPS, IDR, AUD, P, AUD, P)
    units = h264.split_access_units(stream)
    assert [h264.nal_types(u) for u in units] == [[9, 7, 8, 5], [9, 1], [9, 1]]


def test_trailing_nals_without_a_slice_are_not_a_unit() -> None:
    assert h264.split_access_units(annexb(SPS, PPS, IDR, SPS, PPS)) == [annexb(SPS, PPS, IDR)]


def test_parameter_set_cache_fills_in_missing_sps_pps() -> None:
    cache = h264.ParameterSetCache()
    assert cache.apply(annexb(IDR)) == annexb(IDR)  # nothing cached yet
    assert cache.apply(annexb(SPS, PPS, IDR)) == annexb(SPS, PPS, IDR)
    assert cache.apply(annexb(P)) == annexb(P)
    assert cache.apply(annexb(IDR)) == annexb(SPS, PPS, IDR)
    assert cache.apply(annexb(AUD, IDR)) == annexb(AUD, SPS, PPS, IDR)  # the AUD stays first
    assert cache.apply(annexb(PPS, IDR)) == annexb(SPS, PPS, PPS, IDR)


def test_profile_level_id() -> None:
    assert h264.profile_level_id(SPS) == "42c01f"
    with pytest.raises(ValueError):
        h264.profile_level_id(PPS)
