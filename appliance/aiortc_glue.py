"""Every reliance of ours on aiortc internals, in one place.

1. RTCP feedback. For pre-encoded media the feedback aiortc receives goes nowhere:
   keyframe requests (PLI/FIR) only set a flag for its own encoders, REMB only changes its
   own encoder's bitrate, and NACKs look up its own send history. We wrap the sender's RTCP
   handler so that the camera hears the first two and our RTP loop the third.
2. The RTP loop. `replace_rtp_loop` runs our lean loop (`appliance.rtp_loop`) where aiortc
   would run its own: it takes the negotiated parameters from `send()`, marks the loop
   started and ended the way `stop()` waits for, sends through the DTLS transport's SRTP,
   and feeds aiortc's RTCP sender reports with what was sent.

`tests/unit/test_aiortc_glue.py` fails loudly if aiortc changes any of this under us. On a
device with such an aiortc, `replace_rtp_loop` raises AiortcChanged before it touches the
sender, and the publisher keeps aiortc's own loop: streaming costs more CPU, but it works.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiortc import RTCDtlsTransport, RTCRtpCodecCapability, RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    unpack_remb_fci,
)

from cvh_camera.h264_profile import PROFILE_LEVEL_ID

log = logging.getLogger(__name__)

_HOOK = "_handle_rtcp_packet"
_RTP_LOOP = "_run_rtp"
_PRIVATE = "_RTCRtpSender__"  # name-mangled attributes of RTCRtpSender
_RTP_STARTED, _RTP_EXITED = f"{_PRIVATE}rtp_started", f"{_PRIVATE}rtp_exited"
_REPORT_FIELDS = ("ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count")


class AiortcChanged(RuntimeError):
    """aiortc no longer has what this module relies on: update it together with aiortc."""


def check_aiortc() -> None:
    """Raise AiortcChanged unless aiortc still has every hook point this module uses."""
    _check_rtcp_hook()
    _check_rtp_loop()


def _check_rtcp_hook() -> None:
    method = getattr(RTCRtpSender, _HOOK, None)
    if method is None or not inspect.iscoroutinefunction(method):
        raise AiortcChanged(f"RTCRtpSender.{_HOOK} is gone or no longer a coroutine")
    if list(inspect.signature(method).parameters) != ["self", "packet"]:
        raise AiortcChanged(f"RTCRtpSender.{_HOOK} changed its signature")


def _check_rtp_loop() -> None:
    send_rtp = getattr(RTCDtlsTransport, "_send_rtp", None)
    if send_rtp is None or not inspect.iscoroutinefunction(send_rtp):
        raise AiortcChanged("RTCDtlsTransport._send_rtp is gone or no longer a coroutine")
    loop = getattr(RTCRtpSender, _RTP_LOOP, None)
    if loop is None or not inspect.iscoroutinefunction(loop):
        raise AiortcChanged(f"RTCRtpSender.{_RTP_LOOP} is gone or no longer a coroutine")
    if list(inspect.signature(loop).parameters) != ["self", "codec"]:
        raise AiortcChanged(f"RTCRtpSender.{_RTP_LOOP} changed its signature")


def check_sender(sender: RTCRtpSender) -> None:
    """Raise AiortcChanged unless `sender` has the private state replace_rtp_loop uses."""
    names = ["_ssrc", _RTP_STARTED, _RTP_EXITED] + [_PRIVATE + f for f in _REPORT_FIELDS]
    missing = [name for name in names if not hasattr(sender, name)]
    if missing:
        raise AiortcChanged(f"RTCRtpSender no longer has {', '.join(missing)}")
    for name in (_RTP_STARTED, _RTP_EXITED):
        if not isinstance(getattr(sender, name), asyncio.Event):
            raise AiortcChanged(f"RTCRtpSender.{name} is no longer an asyncio.Event")


def forward_feedback(
    sender: RTCRtpSender,
    *,
    on_keyframe_request: Callable[[], None],
    on_bitrate_estimate: Callable[[int], None],
    on_nack: Callable[[Sequence[int]], Awaitable[None]] | None = None,
) -> None:
    """Route PLI/FIR and REMB that reach `sender` to the camera encoder, NACKs to `on_nack`."""
    _check_rtcp_hook()
    original: Callable[[Any], Awaitable[None]] = getattr(sender, _HOOK)

    async def handle(packet: Any) -> None:
        await original(packet)
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            if on_nack is not None:
                await on_nack(packet.lost)
            return
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


class RtpLink:
    """The sender as our RTP loop sees it (`appliance.rtp_loop.RtpLink`)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self._sender = sender
        self.ssrc: int = sender._ssrc

    @staticmethod
    def ntp_time() -> int:
        return clock.current_ntp_time()

    async def send_rtp(self, packet: bytes) -> None:
        await self._sender.transport._send_rtp(packet)  # SRTP-protects and sends

    def report_sent(self, *, ntp_time: int, rtp_timestamp: int, packets: int, octets: int) -> None:
        sender = self._sender
        setattr(sender, _PRIVATE + "ntp_timestamp", ntp_time)
        setattr(sender, _PRIVATE + "rtp_timestamp", rtp_timestamp)
        packet_count = _PRIVATE + "packet_count"
        setattr(sender, packet_count, getattr(sender, packet_count) + packets)
        octet_count = _PRIVATE + "octet_count"
        setattr(sender, octet_count, getattr(sender, octet_count) + octets)


RtpLoop = Callable[[RTCRtpSendParameters, RtpLink], Awaitable[None]]


def replace_rtp_loop(sender: RTCRtpSender, run: RtpLoop) -> RtpLink:
    """Have `sender` run `run(parameters, link)` instead of its own RTP loop.

    `run` is called once the connection negotiated its parameters and runs until it is
    cancelled (by `sender.stop()`), its source ends (MediaStreamError) or the transport
    closes (ConnectionError). Returns the link, for retransmissions. Raises AiortcChanged,
    with `sender` untouched, if aiortc no longer has what this needs.
    """
    _check_rtp_loop()
    check_sender(sender)
    link = RtpLink(sender)
    original_send: Callable[[RTCRtpSendParameters], Awaitable[None]] = sender.send
    negotiated: list[RTCRtpSendParameters] = []

    async def send(parameters: RTCRtpSendParameters) -> None:
        negotiated.append(parameters)
        await original_send(parameters)

    async def run_rtp(codec: Any) -> None:
        getattr(sender, _RTP_STARTED).set()
        try:
            await run(negotiated[-1], link)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass  # stop() cancels us and waits for the exit below, as for aiortc's loop
        except Exception:
            log.exception("the RTP loop failed")
        finally:
            if sender.track is not None:
                sender.track.stop()  # as aiortc's loop does when it ends
            getattr(sender, _RTP_EXITED).set()

    sender.send = send  # type: ignore[method-assign]
    setattr(sender, _RTP_LOOP, run_rtp)
    return link


def h264_preferences() -> list[RTCRtpCodecCapability]:
    """Codec preferences offering only constrained-baseline H.264 (no RTX: see rtp_loop)."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [
        c
        for c in codecs
        if c.mimeType.lower() == "video/h264"
        and c.parameters.get("profile-level-id") == PROFILE_LEVEL_ID
        and c.parameters.get("packetization-mode") == "1"
    ]
    if not h264:
        raise AiortcChanged(f"aiortc offers no H.264 {PROFILE_LEVEL_ID} packetization-mode 1")
    return h264
