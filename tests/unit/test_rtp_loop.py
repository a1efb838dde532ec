"""Our RTP send loop, read back with aiortc's own RTP parser."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from cvh_camera.appliance import h264_payload
from cvh_camera.appliance.rtp_loop import ABS_SEND_TIME_URI, MID_URI, H264RtpLoop
from cvh_camera.appliance.sources.base import AccessUnit

SSRC = 0x11223344
NTP = 0xE1234567_89ABCDEF


class Units:
    """Hands out the given units, then ends the stream the way a stopped track does."""

    def __init__(self, units: Sequence[AccessUnit]) -> None:
        self._units = list(units)

    async def next_unit(self) -> AccessUnit:
        if not self._units:
            raise EOFError
        return self._units.pop(0)


class Link:
    ssrc = SSRC

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.reports: list[dict[str, int]] = []

    def ntp_time(self) -> int:
        return NTP

    async def send_rtp(self, packet: bytes) -> None:
        self.sent.append(packet)

    def report_sent(self, *, ntp_time: int, rtp_timestamp: int, packets: int, octets: int) -> None:
        self.reports.append(
            {"ntp": ntp_time, "rtp": rtp_timestamp, "packets": packets, "octets": octets}
        )


def parameters(*, extensions: bool = True) -> RTCRtpSendParameters:
    codec = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    ext = [
        RTCRtpHeaderExtensionParameters(id=4, uri=MID_URI),
        RTCRtpHeaderExtensionParameters(id=2, uri=ABS_SEND_TIME_URI),
    ]
    return RTCRtpSendParameters(
        codecs=[codec], headerExtensions=ext if extensions else [], muxId="0"
    )


def picture(size: int, timestamp_us: int, *, keyframe: bool = False) -> AccessUnit:
    nal_type = 5 if keyframe else 1
    body = bytes((n % 250) + 1 for n in range(size))
    data = b"\x00\x00\x00\x01" + bytes((0x40 | nal_type,)) + body
    return AccessUnit(data, timestamp_us, keyframe)


async def send(units: list[AccessUnit], *, extensions: bool = True) -> tuple[H264RtpLoop, Link]:
    loop = H264RtpLoop(Units(units), rng=random.Random(7))
    link = Link()
    with pytest.raises(EOFError):
        await loop.run(parameters(extensions=extensions), link)
    return loop, link


def parse(data: bytes) -> RtpPacket:
    extensions = HeaderExtensionsMap()
    extensions.configure(parameters())
    return RtpPacket.parse(data, extensions)


async def test_pictures_become_rtp_packets_a_receiver_understands() -> None:
    units = [picture(3000, 0, keyframe=True), picture(800, 33_333), picture(5000, 66_667)]
    loop, link = await send(units)
    packets = [parse(data) for data in link.sent]
    per_picture = [len(h264_payload.payloads(u.data)) for u in units]
    assert per_picture == [3, 1, 4]
    assert len(packets) == sum(per_picture) == loop.sent_packets
    first = packets[0].sequence_number
    assert [p.sequence_number for p in packets] == [(first + n) & 0xFFFF for n in range(8)]
    assert {(p.version, p.payload_type, p.ssrc) for p in packets} == {(2, 102, SSRC)}
    assert [p.marker for p in packets] == [0, 0, 1, 1, 0, 0, 0, 1]
    stamps = [p.timestamp for p in packets]
    assert stamps[:3] == [stamps[0]] * 3 and stamps[4:] == [stamps[4]] * 4
    assert (stamps[3] - stamps[0]) & 0xFFFFFFFF == 3000  # 33.333 ms at 90 kHz
    assert (stamps[4] - stamps[0]) & 0xFFFFFFFF == 6000
    assert {p.extensions.mid for p in packets} == {"0"}
    assert {p.extensions.abs_send_time for p in packets} == {(NTP >> 14) & 0xFFFFFF}
    assert [p.payload for p in packets] == [x for u in units for x in h264_payload.payloads(u.data)]
    assert [r["packets"] for r in link.reports] == per_picture
    assert [r["rtp"] for r in link.reports] == [stamps[0], stamps[3], stamps[4]]
    assert sum(r["octets"] for r in link.reports) == sum(len(p.payload) for p in packets)


async def test_without_negotiated_extensions_the_header_has_none() -> None:
    _, link = await send([picture(100, 0, keyframe=True)], extensions=False)
    assert len(link.sent) == 1
    assert link.sent[0][0] == 0x80  # version 2, no extension bit
    assert parse(link.sent[0]).payload == link.sent[0][12:]


async def test_nacked_packets_are_sent_again_as_they_were() -> None:
    loop, link = await send([picture(4000, 0, keyframe=True), picture(500, 33_333)])
    sent = list(link.sent)
    first = parse(sent[0]).sequence_number
    await loop.retransmit([first + 1, first + 4, (first - 1) & 0xFFFF], link)
    assert link.sent[len(sent) :] == [sent[1], sent[4]]  # the unknown one is skipped
    assert loop.retransmitted == 2


async def test_the_sequence_number_wraps() -> None:
    loop = H264RtpLoop(Units([picture(3000, 0, keyframe=True)]), rng=random.Random(7))
    loop._sequence = 0xFFFF
    link = Link()
    with pytest.raises(EOFError):
        await loop.run(parameters(), link)
    assert [parse(d).sequence_number for d in link.sent] == [0xFFFF, 0, 1]
    await loop.retransmit([0xFFFF, 1], link)
    assert link.sent[3:] == [link.sent[0], link.sent[2]]


async def test_cancelling_the_loop_ends_it() -> None:
    class Endless:
        async def next_unit(self) -> AccessUnit:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

    task = asyncio.create_task(H264RtpLoop(Endless()).run(parameters(), Link()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1.0)


async def test_a_nack_on_a_closing_connection_is_ignored() -> None:
    loop, link = await send([picture(500, 0, keyframe=True)])
    first = parse(link.sent[0]).sequence_number

    async def closed(packet: bytes) -> None:
        raise ConnectionError("Cannot send encrypted RTP, not connected")

    link.send_rtp = closed  # type: ignore[method-assign]
    await loop.retransmit([first], link)  # no exception into aiortc's RTCP handling
    assert loop.retransmitted == 0
