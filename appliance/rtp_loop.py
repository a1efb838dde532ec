"""The RTP send loop for the camera's H.264, in place of aiortc's general-purpose one.

aiortc's loop builds an `RtpPacket` object per packet, reads the NTP clock twice per
packet and runs its H.264 packetizer through `av.Packet` timestamps in `Fraction`s. Cheap
when hot, but the appliance sends one picture every 33 ms and sleeps in between, so every
picture runs on cold caches, and there the per-packet Python is what the process costs
(bench/RESULTS.md, publisher CPU). This loop does per picture only what it must: one clock
read, one header template, and per packet a two-field patch and one concatenation.

Everything else stays aiortc's: ICE, DTLS, SRTP, RTCP reports (fed with our counts through
`aiortc_glue.RtpLink`). Retransmissions come from our own history of sent packets, asked for
by NACK; no RTX stream is offered, a retransmission goes out again on the media SSRC.
"""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Sequence
from typing import Protocol

from aiortc.rtcrtpparameters import RTCRtpSendParameters

from cvh_camera.appliance import h264_payload
from cvh_camera.appliance.sources.base import AccessUnit

log = logging.getLogger(__name__)

HISTORY_SIZE = 512  # packets kept for NACK: ~2 s at 2 Mbit/s
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
RTP_CLOCK_RATE = 90_000
_MARKER = 0x80


class UnitStream(Protocol):
    async def next_unit(self) -> AccessUnit:
        """The next access unit, its timestamp relative to the stream's first unit."""
        ...


class RtpLink(Protocol):
    """What the loop needs from the sender (aiortc_glue.RtpLink implements it)."""

    ssrc: int

    def ntp_time(self) -> int: ...

    async def send_rtp(self, packet: bytes) -> None: ...

    def report_sent(self, *, ntp_time: int, rtp_timestamp: int, packets: int, octets: int) -> None:
        """Feed the RTCP sender reports."""


class HeaderTemplate:
    """The RTP header of one stream: fixed fields and extensions, patched per packet.

    The one-byte header extensions (RFC 8285) carry the MID and abs-send-time, where
    negotiated; `frame()` fills in timestamp and send time, `packet()` the sequence number
    and marker.
    """

    def __init__(self, *, payload_type: int, ssrc: int, mid: str | None, ids: dict[str, int]):
        ids = {uri: i for uri, i in ids.items() if 1 <= i <= 14}  # the one-byte form's ids
        elements = b""
        self._abs_send_time_at: int | None = None
        encoded = (mid or "").encode()
        if MID_URI in ids and 0 < len(encoded) <= 16:  # what a one-byte element can carry
            elements += bytes(((ids[MID_URI] << 4) | (len(encoded) - 1),)) + encoded
        if ABS_SEND_TIME_URI in ids:
            self._abs_send_time_at = 12 + 4 + len(elements) + 1
            elements += bytes(((ids[ABS_SEND_TIME_URI] << 4) | 2, 0, 0, 0))
        fixed = bytearray(12)
        fixed[1] = payload_type
        struct.pack_into("!I", fixed, 8, ssrc)
        if elements:
            elements += b"\x00" * (-len(elements) % 4)
            fixed[0] = 0x90  # version 2, extension bit
            fixed += struct.pack("!HH", 0xBEDE, len(elements) // 4) + elements
        else:
            fixed[0] = 0x80
        self._header = fixed
        self._payload_type = payload_type

    def frame(self, rtp_timestamp: int, ntp_time: int) -> bytearray:
        """The header for the packets of one picture (sequence number and marker unset)."""
        header = bytearray(self._header)
        struct.pack_into("!I", header, 4, rtp_timestamp)
        if self._abs_send_time_at is not None:
            at = self._abs_send_time_at
            header[at : at + 3] = ((ntp_time >> 14) & 0xFFFFFF).to_bytes(3, "big")
        return header

    def packet(self, header: bytearray, sequence: int, payload: bytes, *, last: bool) -> bytes:
        header[1] = self._payload_type | (_MARKER if last else 0)
        header[2] = sequence >> 8
        header[3] = sequence & 0xFF
        return bytes(header) + payload


def extension_ids(parameters: RTCRtpSendParameters) -> dict[str, int]:
    return {ext.uri: ext.id for ext in parameters.headerExtensions}


class H264RtpLoop:
    """Sends each access unit of `units` as one picture's RTP packets, until cancelled."""

    def __init__(self, units: UnitStream, *, rng: random.Random | None = None) -> None:
        self._units = units
        rng = rng or random.SystemRandom()
        self._sequence = rng.randrange(32768)  # low start: no early wrap (see aiortc)
        self._timestamp_origin = rng.getrandbits(32)
        self._history: list[bytes | None] = [None] * HISTORY_SIZE
        self._history_seq: list[int] = [-1] * HISTORY_SIZE
        self.sent_packets = 0
        self.retransmitted = 0

    async def run(self, parameters: RTCRtpSendParameters, link: RtpLink) -> None:
        codec = parameters.codecs[0]
        if codec.payloadType is None:
            raise ValueError(f"the negotiated {codec.mimeType} has no payload type")
        template = HeaderTemplate(
            payload_type=codec.payloadType,
            ssrc=link.ssrc,
            mid=parameters.muxId or None,
            ids=extension_ids(parameters),
        )
        log.debug("rtp loop: pt=%d %s", codec.payloadType, codec.mimeType)
        while True:
            unit = await self._units.next_unit()
            await self._send_picture(unit, template, link)

    async def _send_picture(
        self, unit: AccessUnit, template: HeaderTemplate, link: RtpLink
    ) -> None:
        parts = h264_payload.payloads(unit.data)
        if not parts:
            return
        ntp_time = link.ntp_time()
        ticks = (unit.timestamp_us * RTP_CLOCK_RATE + 500_000) // 1_000_000  # rounded
        rtp_timestamp = (self._timestamp_origin + ticks) & 0xFFFFFFFF
        header = template.frame(rtp_timestamp, ntp_time)
        last = len(parts) - 1
        sequence = self._sequence
        octets = 0
        for index, part in enumerate(parts):
            packet = template.packet(header, sequence, part, last=index == last)
            slot = sequence % HISTORY_SIZE
            self._history[slot] = packet
            self._history_seq[slot] = sequence
            await link.send_rtp(packet)
            octets += len(part)
            sequence = (sequence + 1) & 0xFFFF
        self._sequence = sequence
        self.sent_packets += len(parts)
        link.report_sent(
            ntp_time=ntp_time, rtp_timestamp=rtp_timestamp, packets=len(parts), octets=octets
        )

    async def retransmit(self, sequences: Sequence[int], link: RtpLink) -> None:
        """Send again the packets a NACK reports lost, those still in the history.

        Runs inside aiortc's RTCP handling, so it never raises for a closing connection."""
        for sequence in sequences:
            slot = sequence % HISTORY_SIZE
            packet = self._history[slot]
            if packet is not None and self._history_seq[slot] == sequence:
                try:
                    await link.send_rtp(packet)
                except ConnectionError:
                    return  # closing: nobody left to repair for
                self.retransmitted += 1
