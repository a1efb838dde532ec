"""Every reliance of ours on aiortc internals, in one place.

aiortc packetizes our pre-encoded H.264 (`av.Packet`) without re-encoding, but in that
mode the RTCP feedback it receives goes nowhere: keyframe requests (PLI/FIR) only set a
flag for its own encoders, and REMB only changes its own encoder's target bitrate. The
camera encoder must hear both, so we wrap the sender's RTCP handler (a private method,
checked by `tests/unit/test_aiortc_glue.py`, which fails loudly if aiortc changes it).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpCodecCapability, RTCRtpSender
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket, unpack_remb_fci

log = logging.getLogger(__name__)

H264_PROFILE = "42e01f"  # constrained baseline: what the camera encodes and browsers expect
_HOOK = "_handle_rtcp_packet"


class AiortcChanged(RuntimeError):
    """aiortc no longer has what this module relies on: update it together with aiortc."""


def check_aiortc() -> None:
    """Raise AiortcChanged unless RTCRtpSender still routes RTCP through our hook point."""
    method = getattr(RTCRtpSender, _HOOK, None)
    if method is None or not inspect.iscoroutinefunction(method):
        raise AiortcChanged(f"RTCRtpSender.{_HOOK} is gone or no longer a coroutine")
    if list(inspect.signature(method).parameters) != ["self", "packet"]:
        raise AiortcChanged(f"RTCRtpSender.{_HOOK} changed its signature")


def forward_feedback(
    sender: RTCRtpSender,
    *,
    on_keyframe_request: Callable[[], None],
    on_bitrate_estimate: Callable[[int], None],
) -> None:
    """Route PLI/FIR and REMB that reach `sender` to the camera encoder as well."""
    check_aiortc()
    original: Callable[[Any], Awaitable[None]] = getattr(sender, _HOOK)

    async def handle(packet: Any) -> None:
        await original(packet)
        if not isinstance(packet, RtcpPsfbPacket):
            return
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            on_keyframe_request()
        elif packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            on_bitrate_estimate(bitrate)

    setattr(sender, _HOOK, handle)


def h264_preferences() -> list[RTCRtpCodecCapability]:
    """Codec preferences offering only constrained-baseline H.264 (and its RTX)."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [
        c
        for c in codecs
        if c.mimeType.lower() == "video/h264"
        and c.parameters.get("profile-level-id") == H264_PROFILE
        and c.parameters.get("packetization-mode") == "1"
    ]
    if not h264:
        raise AiortcChanged(f"aiortc offers no H.264 {H264_PROFILE} packetization-mode 1")
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    return h264 + rtx
