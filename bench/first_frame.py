"""Time from a new subscriber's `start` to its first decoded picture, on the appliance, with
keyframe requests forwarded to the encoder and, as the baseline, without.

How it is measured: DESCRIPTION below (it heads the section in bench/RESULTS.md, and --help).

    python -m bench.first_frame [--count 10] [--seed 1] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from aiortc import RTCPeerConnection

from bench import rig, servers
from bench.clients import feed_watcher
from bench.results import machine_info, publish, table
from tests.support.counter import read_counter
from tests.support.viewer import FeedViewer

SECTION = "## First frame after subscribe (appliance)"
WIDTH, HEIGHT, FPS, BITRATE = 1280, 720, 30, 2_000_000
ROOM_BITRATE = 3_000_000
TARGET_MEDIAN_MS = 150.0
BITRATE_LOG = "camera bitrate="  # the appliance logs every change of the encoder's bitrate
FOLLOWING = 10  # pictures read after the first, to count the keyframes a subscribe caused
DESCRIPTION = """\
`python -m bench.first_frame` runs a local Janus, the slot server (room bitrate 3 Mbit/s:
above the camera's 2 Mbit/s, so REMB never restarts the encoder, which would make a
keyframe) and an appliance on the `test` source (libx264 in real time, as the Pi's encoder
would: 1280×720, 30 fps, 2 Mbit/s, a periodic keyframe only every 300 frames = 10 s). After
the bitrate has been quiet for 3 s, N times: a new aiortc viewer (in the benchmark process)
subscribes; measured is the time from sending `start` (with its SDP answer) to its first
decoded picture, which includes ICE and DTLS set-up, the keyframe requests (Janus's PLI for
a new subscriber, and the aiortc viewer's own PLI on every picture it cannot decode), the
encoder's keyframe and aiortc's jitter buffer (about one frame interval: aiortc's receiver
waits for the next frame; a browser does not); the viewer reads 10 more pictures, leaves,
and a random 0.5–1.5 s pause follows.

- *DTLS up*: when the viewer's peer connection reached `connected` (read from the viewer's
  private peer connection: FeedViewer does not expose it); *≥ 500 ms* counts the set-ups
  that waited for a DTLS retransmission (its first timer is 1 s).
- *DTLS up → picture*: what is left for Janus, the appliance and the decoder.
- *2+ keyframes*: subscriptions after which another keyframe came within the next 10
  pictures (a periodic one is 10 s away): keyframe requests forced more than one.

Two appliances, one after the other, same configuration, same run:
- *forwarded*: `cvh-camera appliance`, which forwards Janus's PLI/FIR to the camera encoder;
- *not forwarded*: `python -m bench.appliance_variant --variant no-keyframe-requests`, the
  same appliance code whose camera source ignores keyframe requests (no product switch: a
  wrapper around the source in the benchmark). The first picture then waits for the next
  periodic keyframe: with a 10 s interval, expect about 5 s on average, anywhere in
  0–10 s. Its pauses get a further random 0–10 s, or every viewer would arrive ~1 s after
  the previous keyframe and wait ~9 s. It shows what forwarding buys; it is not what a
  default configuration (a keyframe every 2 s) would give.

Target: forwarded median ≤ 150 ms."""


@dataclass(frozen=True)
class Subscription:
    first_frame_ms: float  # start sent → first picture decoded
    start_ack_ms: float  # start sent → Janus acknowledged it
    connected_ms: float | None  # start sent → the viewer's DTLS up (None: already at the ack)
    keyframe: bool  # the first decoded picture is a keyframe
    counter: int | None  # the test pattern's frame number on it
    keyframes_after: int  # keyframes among the FOLLOWING pictures after the first

    @property
    def up_ms(self) -> float:
        """When DTLS was up (a connection already up at the ack came up before it)."""
        return self.start_ack_ms if self.connected_ms is None else self.connected_ms


@dataclass(frozen=True)
class Phase:
    name: str
    subscriptions: tuple[Subscription, ...]
    bitrate_changes: int  # encoder bitrate changes logged while measuring (should be 0)
    ignored_requests: int | None  # keyframe requests the baseline dropped

    def stats(self) -> tuple[float, float, float]:
        """Median, p90 and max of the first-frame times, ms."""
        times = sorted(s.first_frame_ms for s in self.subscriptions)
        p90 = times[0]
        if len(times) > 1:
            p90 = statistics.quantiles(times, n=10, method="inclusive")[8]
        return statistics.median(times), p90, times[-1]


def _when_connected(viewer: FeedViewer) -> asyncio.Future[float] | None:
    """A future of the time the viewer's peer connection (ICE + DTLS) comes up; None if it
    already is. FeedViewer does not expose its peer connection: read its private one, for
    this diagnostic only."""
    pc: RTCPeerConnection | None = getattr(viewer, "_pc", None)
    if pc is None or pc.connectionState == "connected":
        return None
    connected: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def on_change() -> None:
        if pc.connectionState == "connected" and not connected.done():
            connected.set_result(time.monotonic())

    pc.on("connectionstatechange", on_change)
    return connected


async def subscribe_once(
    http: aiohttp.ClientSession, janus_url: str, room: int, feed_id: int, timeout: float
) -> Subscription:
    viewer = FeedViewer(http, janus_url, room)
    try:
        await viewer.watch(feed_id)
        acked = time.monotonic()
        connected = _when_connected(viewer)
        try:
            decoded = await viewer.next_frame(timeout)
            following = [await viewer.next_frame(5.0) for _ in range(FOLLOWING)]
        except TimeoutError:
            raise rig.BenchError(f"pictures stopped within {timeout} s of subscribing") from None
        start = viewer.started_at
        if start is None:
            raise rig.BenchError("the viewer did not record when it sent start")
        up = connected.result() if connected is not None and connected.done() else None
        return Subscription(
            (decoded.received - start) * 1000.0,
            (acked - start) * 1000.0,
            None if up is None else (up - start) * 1000.0,
            bool(decoded.frame.key_frame),
            read_counter(decoded.frame),
            sum(bool(f.frame.key_frame) for f in following),
        )
    finally:
        await viewer.close()


async def wait_for_quiet_bitrate(camera: rig.Child, settle: float, timeout: float) -> None:
    """Until the encoder's bitrate has not changed (REMB ramp at publish) for `settle` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        change = camera.expect(BITRATE_LOG)
        try:
            async with asyncio.timeout(settle):
                await change
        except TimeoutError:
            return
    raise rig.BenchError(f"the camera bitrate kept changing for {timeout} s\n{camera.log_tail()}")


async def run_phase(
    name: str, variant: str, bench: rig.Rig, server: servers.Server, token: str,
    http: aiohttp.ClientSession, args: argparse.Namespace, rng: random.Random,
) -> Phase:  # fmt: skip
    camera_config = {
        "source": "test", "width": WIDTH, "height": HEIGHT, "fps": FPS, "bitrate": BITRATE,
        "keyframe_interval": args.keyframe_interval,
    }  # fmt: skip
    results = []
    async with feed_watcher(server.url) as watcher:
        camera = bench.appliance(server, token, camera_config, name.replace(" ", "-"), variant)
        feed_id, _ = await watcher.new_feed(camera)
        await wait_for_quiet_bitrate(camera, args.settle, timeout=60.0)
        changes_before = camera.log_text().count(BITRATE_LOG)
        for number in range(args.count):
            one = await subscribe_once(
                http, bench.janus.http_url, server.room, feed_id, args.frame_timeout
            )
            results.append(one)
            print(f"  {name} #{number + 1}: {one.first_frame_ms:7.1f} ms (start acked "
                  f"{one.start_ack_ms:.0f} ms, DTLS up {one.up_ms:.0f} ms, keyframe "
                  f"{one.keyframe}, picture {one.counter}, keyframes in the next {FOLLOWING}: "
                  f"{one.keyframes_after})", flush=True)  # fmt: skip
            # The baseline's wait depends on where in the keyframe period a viewer arrives; a
            # pause of 0.5-1.5 s after the last keyframe would always arrive at the same place.
            spread = args.keyframe_interval / FPS if variant else 0.0
            await asyncio.sleep(rng.uniform(0.5, 1.5) + rng.uniform(0.0, spread))
        text = camera.log_text()
        status = await asyncio.to_thread(camera.stop)
        await watcher.next("remove_feed", camera)
    if status != 0:
        raise rig.BenchError(f"{name}: the appliance exited with {status}\n{camera.log_tail()}")
    ignored = text.count("keyframe request ignored") if variant else None
    return Phase(name, tuple(results), text.count(BITRATE_LOG) - changes_before, ignored)


HEADER = ("keyframe request", "N", "median ms", "p90 ms", "max ms", "first picture a keyframe",
          "start acked, median ms", "DTLS up, median ms", "DTLS up ≥ 500 ms",
          "DTLS up → picture, median ms", f"2+ keyframes in first {FOLLOWING + 1} pictures",
          "bitrate changes while measuring")  # fmt: skip


def figures(phases: Sequence[Phase]) -> list[str]:
    rows, lines = [], []
    for phase in phases:
        subs, count = phase.subscriptions, len(phase.subscriptions)
        median, p90, worst = phase.stats()
        rows.append((
            phase.name, str(count), f"{median:.1f}", f"{p90:.1f}", f"{worst:.1f}",
            f"{sum(s.keyframe for s in subs)}/{count}",
            f"{statistics.median(s.start_ack_ms for s in subs):.1f}",
            f"{statistics.median(s.up_ms for s in subs):.1f}",
            f"{sum(s.up_ms >= 500 for s in subs)}/{count}",
            f"{statistics.median(s.first_frame_ms - s.up_ms for s in subs):.1f}",
            f"{sum(s.keyframes_after > 0 for s in subs)}/{count}", str(phase.bitrate_changes),
        ))  # fmt: skip
        lines.append(f"{phase.name}, each (ms): "
                     + ", ".join(f"{s.first_frame_ms:.0f}" for s in subs))  # fmt: skip
        if phase.ignored_requests is not None:
            lines.append(f"{phase.name}: keyframe requests that reached the publisher and were "
                         f"dropped: {phase.ignored_requests}")  # fmt: skip
    median = phases[0].stats()[0]
    verdict = "met" if median <= TARGET_MEDIAN_MS else "NOT met"
    lines.append(
        f"target: forwarded median ≤ {TARGET_MEDIAN_MS:.0f} ms: {median:.1f} ms: {verdict}"
    )
    if len(phases) > 1:
        lines.append(f"baseline median / forwarded median: {phases[1].stats()[0] / median:.0f}×")
    return [*table(HEADER, rows), "", *(f"- {line}" for line in lines)]


async def run(bench: rig.Rig, args: argparse.Namespace) -> int:
    rng, token = random.Random(args.seed), secrets.token_hex(8)
    server = await servers.start(bench, servers.ours(), [token], bitrate=ROOM_BITRATE)
    phases = [("forwarded", "")]
    phases += [] if args.no_baseline else [("not forwarded", "no-keyframe-requests")]
    results = []
    async with asyncio.timeout(args.time_limit), aiohttp.ClientSession() as http:
        for name, variant in phases:
            print(f"{name}: …", flush=True)
            results.append(await run_phase(name, variant, bench, server, token, http, args, rng))
    info = machine_info(bench.load_before)
    info["subscriptions"] = f"N={args.count} per appliance, seed {args.seed}"
    publish(SECTION, DESCRIPTION, info, figures(results), args.write_results)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10, help="subscriptions per appliance")
    parser.add_argument("--keyframe-interval", type=int, default=300, help="camera frames")
    parser.add_argument("--seed", type=int, default=1, help="for the pauses between viewers")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds without a bitrate change before measuring")  # fmt: skip
    parser.add_argument("--frame-timeout", type=float, default=15.0,
                        help="seconds a viewer waits for its first picture")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    parser.add_argument("--time-limit", type=float, default=600.0, help="whole run, seconds")
    rig.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.count < 1 or not 1 <= args.keyframe_interval <= 600:
        parser.error("--count must be at least 1 and --keyframe-interval within 1..600")
    return rig.run(lambda bench: run(bench, args), workdir=args.workdir, prefix="cvh-ff-")


if __name__ == "__main__":
    sys.exit(main())
