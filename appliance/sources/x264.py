"""libx264 through PyAV, set up to produce what the Pi's hardware encoder hands over.

Constrained baseline (x264's baseline sets constraint_set0 and constraint_set1: the SPS starts
42 c0), no B-frames, one slice per picture, zero latency (one packet out per frame in),
Annex-B with SPS/PPS repeated on every IDR, an IDR every `keyframe_interval` frames and no
scene-cut keyframes, bitrate-capped rate control (VBV of half a second).

A forced keyframe is a frame with `pict_type = I` and x264's `forced-idr`: an IDR with
SPS/PPS. libx264 ignores a bitrate change on an open context, so `set_bitrate` recreates the
context before the next frame; a new context starts with an IDR. Not thread-safe: the worker
thread that encodes owns it.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import av
from av.video.frame import PictureType

from cvh_camera.appliance.sources.base import SourceError

log = logging.getLogger(__name__)

MIN_BITRATE = 50_000
MAX_BITRATE = 50_000_000


def clamp_bitrate(bits_per_second: int) -> int:
    return max(MIN_BITRATE, min(MAX_BITRATE, int(bits_per_second)))


class X264Encoder:
    def __init__(
        self, *, width: int, height: int, fps: int, bitrate: int, keyframe_interval: int
    ) -> None:
        if keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be at least 1, got {keyframe_interval}")
        self.width, self.height, self.fps = width, height, fps
        self.keyframe_interval = keyframe_interval
        self.bitrate = clamp_bitrate(bitrate)
        self._context: av.VideoCodecContext | None = None

    def open(self) -> None:
        self._context = self._new_context(self.bitrate)

    def set_bitrate(self, bits_per_second: int) -> None:
        """Use this bitrate from the next frame on (which will then be an IDR)."""
        bitrate = clamp_bitrate(bits_per_second)
        if bitrate != self.bitrate:
            self.bitrate = bitrate
            self._context = None  # reopened by the next encode()

    def encode(
        self, frame: av.VideoFrame, *, force_keyframe: bool = False
    ) -> list[tuple[bytes, int]]:
        """Encode one frame (`pts` in µs): the access units that came out, with their pts."""
        if self._context is None:
            self._context = self._new_context(self.bitrate)
        frame.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        try:
            packets = self._context.encode(frame)
        except av.FFmpegError as exc:
            raise SourceError(f"libx264 failed to encode a frame: {exc}") from exc
        fallback = frame.pts if frame.pts is not None else 0
        return [
            (bytes(packet), packet.pts if packet.pts is not None else fallback)
            for packet in packets
        ]

    def close(self) -> None:
        self._context = None

    def _new_context(self, bitrate: int) -> av.VideoCodecContext:
        try:
            context = av.CodecContext.create("libx264", "w")
        except (ValueError, av.FFmpegError) as exc:
            raise SourceError(f"PyAV has no libx264 encoder: {exc}") from exc
        if not isinstance(context, av.VideoCodecContext):
            raise SourceError("PyAV's libx264 is not a video encoder")
        context.width, context.height = self.width, self.height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 1_000_000)
        context.framerate = Fraction(self.fps, 1)
        context.bit_rate = bitrate
        context.gop_size = self.keyframe_interval
        context.max_b_frames = 0
        context.thread_count = 1  # one slice per picture, like the Pi; no frame-thread delay
        context.options = {
            "profile": "baseline",
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",
            "maxrate": str(bitrate),
            "bufsize": str(bitrate // 2),
            "x264-params": "repeat-headers=1:scenecut=0:annexb=1",
        }
        try:
            context.open()
        except av.FFmpegError as exc:
            raise SourceError(f"cannot open libx264 ({self.width}x{self.height}): {exc}") from exc
        log.debug("x264 opened %dx%d bitrate=%d", self.width, self.height, bitrate)
        return context
