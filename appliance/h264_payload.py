"""H.264 access units cut into RTP payloads (RFC 6184, packetization-mode 1).

A NAL unit that fits is sent whole (single NAL unit packet); a larger one is cut into FU-A
fragments of balanced size, so that the last one is not a runt. Access unit delimiters and
filler data are dropped: WebRTC receivers need neither. The cutting works on the memoryviews
of `h264.nal_units` and copies each payload once, when it is joined with its FU-A header.
"""

from __future__ import annotations

from cvh_camera.appliance.sources.h264 import NAL_AUD, nal_units

MAX_PAYLOAD = 1300  # bytes per RTP payload (aiortc's figure: fits a 1500-byte MTU with SRTP)

NAL_FILLER = 12
NAL_FU_A = 28
_DROPPED = frozenset((NAL_AUD, NAL_FILLER))
_FU_START = 0x80
_FU_END = 0x40


def payloads(access_unit: bytes, max_size: int = MAX_PAYLOAD) -> list[bytes]:
    """RTP payloads for one access unit, in order; the last one carries the marker bit."""
    out: list[bytes] = []
    for nal in nal_units(access_unit):
        nal_type = nal[0] & 0x1F
        if nal_type in _DROPPED:
            continue
        if len(nal) <= max_size:
            out.append(bytes(nal))
        else:
            out.extend(fu_a(nal, max_size))
    return out


def fu_a(nal: memoryview, max_size: int) -> list[bytes]:
    """A NAL unit larger than `max_size` as FU-A fragments of at most `max_size` bytes."""
    indicator = (nal[0] & 0xE0) | NAL_FU_A
    nal_type = nal[0] & 0x1F
    body = nal[1:]
    count = -(-len(body) // (max_size - 2))  # ceiling division
    size, larger = divmod(len(body), count)  # the first `larger` fragments get one byte more
    fragments = []
    pos = 0
    for index in range(count):
        length = size + (index < larger)
        flags = (_FU_START if index == 0 else 0) | (_FU_END if index == count - 1 else 0)
        fragments.append(bytes((indicator, flags | nal_type)) + body[pos : pos + length])
        pos += length
    return fragments
