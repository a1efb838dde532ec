"""The video track: the camera's H.264 access units, never decoded or re-encoded.

Our RTP loop (`appliance.rtp_loop`) reads `next_unit()`; `recv()` offers the same units as
`av.Packet`s to anything that reads the track the aiortc way. Timestamps are the camera's
capture times, relative to the first unit (a keyframe), in microseconds. When the camera
fails, the track ends and hands the camera's error to `on_source_failed`.
"""

from __future__ import annotations

import fractions
import logging
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from cvh_camera.appliance.sources.base import AccessUnit, SourceError, VideoSource

log = logging.getLogger(__name__)

MICROSECONDS = fractions.Fraction(1, 1_000_000)


class H264PacketTrack(MediaStreamTrack):
    kind = "video"

    def __init__(
        self,
        source: VideoSource,
        on_source_failed: Callable[[SourceError], None] = lambda error: None,
    ) -> None:
        super().__init__()
        self._source = source
        self._on_source_failed = on_source_failed
        self._first_us: int | None = None
        self.sent_units = 0

    async def next_unit(self) -> AccessUnit:
        """The next access unit; MediaStreamError once the track or its source ended."""
        if self.readyState != "live":
            raise MediaStreamError
        try:
            unit = await self._source.next_unit()
            if self._first_us is None:  # a stream starts with SPS, PPS and an IDR picture
                if not unit.keyframe:
                    self._source.request_keyframe()
                while not unit.keyframe:
                    unit = await self._source.next_unit()
                self._first_us = unit.timestamp_us
        except SourceError as error:
            log.error("camera source failed: %s", error)
            self.stop()
            self._on_source_failed(error)
            raise MediaStreamError from error
        self.sent_units += 1
        return AccessUnit(unit.data, unit.timestamp_us - self._first_us, unit.keyframe)

    async def recv(self) -> av.Packet[Any]:
        unit = await self.next_unit()
        packet = av.Packet(unit.data)
        packet.pts = unit.timestamp_us
        packet.time_base = MICROSECONDS
        return packet
