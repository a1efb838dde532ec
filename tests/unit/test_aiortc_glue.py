"""Our reliance on aiortc internals: fails loudly when aiortc changes under it.

The RTP loop running in place of aiortc's, end to end, is in
tests/integration/test_rtp_loopback.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiortc import RTCPeerConnection
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    pack_remb_fci,
)

from cvh_camera.appliance.aiortc_glue import (
    RtpLink,
    check_aiortc,
    check_sender,
    forward_feedback,
    h264_preferences,
)


def test_aiortc_still_has_the_hooks() -> None:
    check_aiortc()  # raises AiortcChanged with what is gone


async def test_a_sender_still_has_the_state_we_feed() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender
        check_sender(sender)
        link = RtpLink(sender)
        link.report_sent(ntp_time=5 << 32, rtp_timestamp=9000, packets=3, octets=3000)
        link.report_sent(ntp_time=6 << 32, rtp_timestamp=12000, packets=2, octets=500)
        stats = await sender.getStats()
        outbound = [s for s in stats.values() if s.type == "outbound-rtp"]
        assert [(s.packetsSent, s.bytesSent) for s in outbound] == [(5, 3500)]
        assert link.ssrc == sender._ssrc
    finally:
        await pc.close()


def test_only_constrained_baseline_h264_is_offered() -> None:
    codecs = h264_preferences()
    assert [c.mimeType for c in codecs] == ["video/H264"]  # no RTX: see appliance.rtp_loop
    assert [c.parameters["profile-level-id"] for c in codecs] == ["42e01f"]


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


async def test_nacks_reach_the_rtp_loop() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender
        lost: list[list[int]] = []

        async def on_nack(sequences: Sequence[int]) -> None:
            lost.append(list(sequences))

        forward_feedback(
            sender, on_keyframe_request=lambda: None, on_bitrate_estimate=print, on_nack=on_nack
        )
        nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc, lost=[7, 9])
        await sender._handle_rtcp_packet(nack)
        assert lost == [[7, 9]]
    finally:
        await pc.close()
        await asyncio.sleep(0)
