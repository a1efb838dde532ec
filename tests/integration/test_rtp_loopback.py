"""Our RTP loop in place of aiortc's, end to end: aiortc publisher → aiortc receiver.

No Janus here: the receiver is a second RTCPeerConnection in this process, so what is
checked is our packets themselves (SRTP, header extensions, H.264 payloads, RTCP reports,
retransmission on NACK) as a real WebRTC stack decodes them.
tests/integration/test_appliance.py does it via Janus.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver

from cvh_camera.appliance.aiortc_glue import (
    RtpLink,
    forward_feedback,
    h264_preferences,
    replace_rtp_loop,
)
from cvh_camera.appliance.publisher import send_with_our_rtp_loop
from cvh_camera.appliance.rtp_loop import H264RtpLoop
from cvh_camera.appliance.sources.filesource import FileSource
from cvh_camera.appliance.sources.synthetic import record_test_stream
from cvh_camera.appliance.track import H264PacketTrack
from tests.support.counter import read_counter

FRAMES = 20


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loopback") / "test.h264"
    record_test_stream(
        path, width=320, height=240, fps=30, seconds=2, bitrate=600_000, keyframe_interval=30
    )
    return path


@dataclass
class Peers:
    """A publisher sending our track, a receiver, not yet connected."""

    track: H264PacketTrack
    transceiver: RTCRtpTransceiver
    publisher: RTCPeerConnection
    receiver: RTCPeerConnection
    tracks: asyncio.Queue[MediaStreamTrack]

    async def connect(self) -> MediaStreamTrack:
        """Offer, answer; the receiver's track."""
        await self.publisher.setLocalDescription(await self.publisher.createOffer())
        await self.receiver.setRemoteDescription(self.publisher.localDescription)
        await self.receiver.setLocalDescription(await self.receiver.createAnswer())
        await self.publisher.setRemoteDescription(self.receiver.localDescription)
        return await asyncio.wait_for(self.tracks.get(), 10)


@contextlib.asynccontextmanager
async def peers(recording: Path) -> AsyncIterator[Peers]:
    source = FileSource(recording, width=320, height=240, fps=30)
    await source.start()
    publisher, receiver = RTCPeerConnection(), RTCPeerConnection()
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    receiver.on("track", tracks.put_nowait)
    try:
        track = H264PacketTrack(source)
        transceiver = publisher.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(h264_preferences())
        yield Peers(track, transceiver, publisher, receiver, tracks)
    finally:
        await asyncio.wait_for(publisher.close(), 5)  # our loop ends the way stop() waits for
        await receiver.close()
        await source.stop()


@dataclass
class Call:
    loop: H264RtpLoop
    link: RtpLink
    transceiver: RTCRtpTransceiver
    remote: MediaStreamTrack


@contextlib.asynccontextmanager
async def call(
    recording: Path, *, drop: Callable[[int], bool] | None = None
) -> AsyncIterator[Call]:
    """Our publisher and an aiortc receiver, connected; `drop(n)` loses the n-th packet sent."""
    async with peers(recording) as p:
        loop = H264RtpLoop(p.track)
        link = replace_rtp_loop(p.transceiver.sender, loop.run)
        forward_feedback(
            p.transceiver.sender,
            on_keyframe_request=lambda: None,
            on_bitrate_estimate=lambda bitrate: None,
            on_nack=lambda sequences: loop.retransmit(sequences, link),
        )
        if drop is not None:
            send, count = link.send_rtp, itertools.count()

            async def lossy(packet: bytes) -> None:
                if not drop(next(count)):
                    await send(packet)

            link.send_rtp = lossy  # type: ignore[method-assign]
        yield Call(loop, link, p.transceiver, await p.connect())


async def decoded(track: MediaStreamTrack, count: int) -> list[tuple[int, int, int | None]]:
    frames = []
    for _ in range(count):
        frame = await track.recv()
        frames.append((frame.width, frame.height, read_counter(frame)))  # type: ignore[union-attr]
    return frames


def consecutive(counters: list[int | None]) -> bool:
    present = [c for c in counters if c is not None]
    return len(present) == len(counters) and all(
        (b - a) % 60 == 1 for a, b in itertools.pairwise(present)
    )


async def test_a_receiver_decodes_what_our_loop_sends(recording: Path) -> None:
    async with call(recording) as c:
        frames = await asyncio.wait_for(decoded(c.remote, FRAMES), 20)
        assert {(w, h) for w, h, _ in frames} == {(320, 240)}
        counters = [counter for _, _, counter in frames]
        assert consecutive(counters), counters  # every picture, in order
        assert c.loop.sent_packets >= FRAMES
        stats = await c.transceiver.sender.getStats()
        sent = [s for s in stats.values() if s.type == "outbound-rtp"]
        assert sent and sent[0].packetsSent >= FRAMES  # our counts reach the sender reports


async def test_a_lost_packet_is_sent_again_on_nack(recording: Path) -> None:
    lost = {12, 40}  # two packets in the middle of pictures, never sent the first time
    async with call(recording, drop=lambda n: n in lost) as c:
        frames = await asyncio.wait_for(decoded(c.remote, FRAMES), 20)
        counters = [counter for _, _, counter in frames]
        assert consecutive(counters), counters
        assert c.loop.retransmitted >= len(lost)  # the receiver asked, our history answered


async def test_if_aiortc_changed_its_own_loop_still_sends(
    recording: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The product degrades to aiortc's RTP loop (more CPU) instead of not streaming."""
    async with peers(recording) as p:
        sender = p.transceiver.sender
        del sender._RTCRtpSender__octet_count  # type: ignore[attr-defined]  # "a newer aiortc"
        with caplog.at_level(logging.WARNING, logger="cvh_camera.appliance.publisher"):
            assert send_with_our_rtp_loop(sender, p.track) is None
        assert "aiortc's own RTP loop" in caplog.text
        assert "send" not in vars(sender) and "_run_rtp" not in vars(sender)  # untouched
        sender._RTCRtpSender__octet_count = 0  # type: ignore[attr-defined]  # aiortc needs it
        frames = await asyncio.wait_for(decoded(await p.connect(), 5), 20)
        assert {(w, h) for w, h, _ in frames} == {(320, 240)}
