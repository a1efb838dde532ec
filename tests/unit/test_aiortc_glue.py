"""Our one reliance on aiortc internals: fails loudly when aiortc changes under it."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

from appliance.aiortc_glue import check_aiortc, forward_feedback, h264_preferences


def test_aiortc_still_has_the_hook() -> None:
    check_aiortc()  # raises AiortcChanged with what is gone


def test_only_constrained_baseline_h264_is_offered() -> None:
    codecs = h264_preferences()
    h264 = [c for c in codecs if c.mimeType == "video/H264"]
    assert [c.parameters["profile-level-id"] for c in h264] == ["42e01f"]
    assert {c.mimeType for c in codecs} == {"video/H264", "video/rtx"}


async def test_pli_and_remb_reach_the_camera() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender
        keyframes: list[None] = []
        estimates: list[int] = []
        forward_feedback(
            sender,
            on_keyframe_request=lambda: keyframes.append(None),
            on_bitrate_estimate=estimates.append,
        )
        ssrc = sender._ssrc
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc))
        remb = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(750_000, [ssrc])
        )
        await sender._handle_rtcp_packet(remb)
        assert len(keyframes) == 1
        assert len(estimates) == 1 and abs(estimates[0] - 750_000) < 750_000 * 0.01
    finally:
        await pc.close()
        await asyncio.sleep(0)
