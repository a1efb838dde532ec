"""The video track aiortc sends: the camera's H.264 access units as `av.Packet`s.

aiortc packetizes packets as they are (no decoding, no re-encoding). Timestamps are the
camera's capture times, relative to the first unit, in microseconds.
"""

from __future__ import annotations

import fractions
import logging
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from appliance.sources.base import SourceError, VideoSource

log = logging.getLogger(__name__)

MICROSECONDS = fractions.Fraction(1, 1_000_000)


class H264PacketTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: VideoSource) -> None:
        super().__init__()
        self._source = source
        self._first_us: int | None = None
        self.sent_units = 0

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            unit = await self._source.next_unit()
            if self._first_us is None:  # a stream starts with SPS, PPS and an IDR picture
                self._source.request_keyframe()
                while not unit.keyframe:
                    unit = await self._source.next_unit()
                self._first_us = unit.timestamp_us
        except SourceError as error:
            log.error("camera source failed: %s", error)
            self.stop()
            raise MediaStreamError from error
        packet = av.Packet(unit.data)
        packet.pts = unit.timestamp_us - self._first_us
        packet.time_base = MICROSECONDS
        self.sent_units += 1
        return packet
