"""Small Annex-B helpers: NAL units, access units, keyframes, parameter sets.

Only what the sources and the RTP payloader (`appliance/h264_payload.py`) need: no bitstream
decoding beyond the first bit of a slice header.
"""

from __future__ import annotations

from collections.abc import Iterable

START_CODE = b"\x00\x00\x00\x01"
_START3 = b"\x00\x00\x01"

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

Nal = bytes | memoryview  # one NAL unit, without its start code

_VCL = frozenset({NAL_SLICE, NAL_IDR})
# NAL types that may only precede the first slice of an access unit (H.264 7.4.1.2.3).
_PREFIX = frozenset({NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD, 14, 15, 16, 17, 18})


def nal_units(data: bytes) -> list[memoryview]:
    """The NAL units of Annex-B bytes, without start codes or trailing zero bytes.

    The one Annex-B splitter: the RTP payloader's hot path too, hence views, not copies.
    Zero bytes before a start code belong to it (4-byte start codes, trailing_zero_8bits):
    a NAL unit never ends in 0x00.
    """
    view = memoryview(data)
    units = []
    start = data.find(_START3)
    while start >= 0:
        begin = start + 3
        start = data.find(_START3, begin)
        end = len(data) if start < 0 else start
        while end > begin and data[end - 1] == 0:
            end -= 1
        if end > begin:
            units.append(view[begin:end])
    return units


def nal_type(nal: Nal) -> int:
    return nal[0] & 0x1F


def join_nals(nals: Iterable[Nal]) -> bytes:
    """Annex-B bytes with 4-byte start codes."""
    return b"".join(START_CODE + nal for nal in nals)


def nal_types(au: bytes) -> list[int]:
    return [nal_type(nal) for nal in nal_units(au)]


def is_keyframe(au: bytes) -> bool:
    """True if the access unit holds an IDR slice."""
    return NAL_IDR in nal_types(au)


def has_parameter_sets(au: bytes) -> bool:
    types = nal_types(au)
    return NAL_SPS in types and NAL_PPS in types


def has_slice(au: bytes) -> bool:
    return any(nal_type(nal) in _VCL for nal in nal_units(au))


def profile_level_id(sps: Nal) -> str:
    """The SDP profile-level-id of an SPS NAL unit, e.g. '42c01f' (constrained baseline 3.1)."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    return sps[1:4].hex()


def _starts_picture(nal: Nal) -> bool:
    # first_mb_in_slice is the first ue(v) of the slice header; ue(v) == 0 is the single bit 1.
    return len(nal) > 1 and bool(nal[1] & 0x80)


def split_access_units(stream: bytes) -> list[bytes]:
    """Group an elementary stream into access units (Annex-B, 4-byte start codes).

    A unit ends before an AUD, SEI, SPS or PPS that follows a slice, and before a slice with
    first_mb_in_slice == 0 that follows a slice (the first slice of the next picture).
    """
    units: list[bytes] = []
    current: list[memoryview] = []
    seen_slice = False
    for nal in nal_units(stream):
        kind = nal_type(nal)
        starts_unit = seen_slice and (kind in _PREFIX or (kind in _VCL and _starts_picture(nal)))
        if starts_unit:
            units.append(join_nals(current))
            current, seen_slice = [], False
        current.append(nal)
        seen_slice = seen_slice or kind in _VCL
    if current and seen_slice:
        units.append(join_nals(current))
    return units


class ParameterSetCache:
    """Remembers the latest SPS and PPS and puts them in front of IDR units that lack them."""

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def apply(self, au: bytes) -> bytes:
        nals = nal_units(au)
        types = [nal_type(nal) for nal in nals]
        for nal, kind in zip(nals, types, strict=True):
            if kind == NAL_SPS:
                self.sps = bytes(nal)
            elif kind == NAL_PPS:
                self.pps = bytes(nal)
        if NAL_IDR not in types or (NAL_SPS in types and NAL_PPS in types):
            return au
        if self.sps is None or self.pps is None:
            return au
        at = 1 if types and types[0] == NAL_AUD else 0  # an AUD stays first
        return join_nals([*nals[:at], self.sps, self.pps, *nals[at:]])
