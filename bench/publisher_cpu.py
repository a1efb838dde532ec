"""Publisher CPU at 1280×720, 30 fps, 2 Mbit/s: the appliance passing the camera's H.264
through (A), against aiortc encoding the same pictures itself (B), and A with a thread
handing the pictures over (A'), in one run.

How it is measured: DESCRIPTION below (it heads the section in bench/RESULTS.md, and --help).

    python -m bench.publisher_cpu [--window 10] [--windows 3] [--warmup 5] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench import rig, servers
from bench.clients import feed_watcher
from bench.results import machine_info, publish, table
from cvh_camera.appliance.sources.synthetic import record_test_stream
from tests.support.viewer import FeedViewer

SECTION = "## Publisher CPU (appliance)"
WIDTH, HEIGHT, FPS, BITRATE, KEYFRAME_INTERVAL = 1280, 720, 30, 2_000_000, 60
TARGET_CPU_PER_10S = 0.2
TARGET_RATIO = 15.0
FIRST_FRAME_TIMEOUT = 15.0
Pick = Callable[["Sample"], float | int | None]
DESCRIPTION = """\
`python -m bench.publisher_cpu` records 10 s of the test stream (1280×720, 30 fps, 2 Mbit/s,
an IDR every 60 frames), starts a local Janus and the slot server (room bitrate 2 Mbit/s,
so Janus's REMB asks for the stream's own rate), then measures three publishers one after
the other, each with one aiortc viewer (in the benchmark process, not counted) subscribed
and decoding: CPU time (utime + stime of all threads, `/proc/<pid>/stat`, 10 ms ticks) over
three back-to-back 10 s windows after a 5 s warm-up that starts once the viewer decoded
its first picture; the figure is the median window.

- *A*: the real `cvh-camera appliance` process, `camera.source: file` on the recording:
  the camera's hardware encoder does the encoding; the appliance packetizes (our RTP loop,
  `appliance/rtp_loop.py`), encrypts and sends (aiortc's SRTP and ICE). The file source
  paces on the event loop, no thread.
- *B*: `bench/aiortc_encoding_publisher.py`: the same pictures (decoded from the recording
  up front, outside the window) handed to aiortc as `av.VideoFrame`s at 30 fps, so aiortc's
  own H.264 encoder (libx264 with aiortc's settings; bitrate from Janus's REMB) encodes
  them; same Janus room, same offer (H.264 42e01f only).
- *A'* (for information, no target): A with the recording replayed by a thread of its own
  that hands each picture to the event loop (`python -m bench.appliance_variant --variant
  thread-handoff`), as picamera2's encoder thread does on a Pi: A' - A is what that
  hand-over costs.

*Mbit/s*: A's is the recording's; B's is what its sender reported sending. *CPU ms per
picture*: per picture B handed to aiortc (B skips frame slots when it falls behind), for A
per picture the viewer decoded (30 fps, nothing lost). *viewer process*: the benchmark
process (the aiortc viewer decoding 720p30), on the same two cores.

Targets: A ≤ 0.2 CPU-s per 10 s; B/A ≥ 15×.

Where A's time goes (py-spy and perf on this machine): the appliance sleeps between
pictures, so each picture runs on cold caches and costs about 0.6 ms: a quarter in the
kernel's `sendto` (on loopback that includes Janus's receive path), a fifth in SRTP, a fifth
in the event loop's wake-up, the rest our Python. What brought A from 0.32 to under 0.2:
our RTP loop in place of aiortc's (aiortc built an `RtpPacket` object per packet, read the
NTP clock twice per packet and converted timestamps through `Fraction`s), and the file
source pacing on the event loop instead of handing pictures over from a thread (A' - A
shows that hand-over). uvloop came before."""


@dataclass(frozen=True)
class Sample:
    """The state of a run at one instant."""

    mono: float  # time.monotonic()
    cpu_s: float  # the publisher's CPU time so far
    bench_cpu_s: float  # this process's (the viewer's) CPU time so far
    viewer_frames: int  # pictures the viewer decoded so far
    sent_frames: int | None = None  # pictures handed to aiortc so far (run B)
    skipped: int | None = None  # frame slots missed so far (run B)
    sent_bytes: int | None = None  # RTP bytes sent so far (run B)


@dataclass(frozen=True)
class Measured:
    name: str
    windows: tuple[tuple[Sample, Sample], ...]  # (start, end), back to back
    bits_per_second: float | None = None  # the recording's (run A); run B's come from samples

    def each(self, pick: Pick) -> list[float]:
        """`pick`'s growth per 10 s in each window (none if it is not measured)."""
        values = []
        for start, end in self.windows:
            first, last = pick(start), pick(end)
            if first is not None and last is not None:
                values.append((last - first) * 10.0 / (end.mono - start.mono))
        return values

    def median(self, pick: Pick) -> float | None:
        values = self.each(pick)
        return statistics.median(values) if values else None

    @property
    def cpu_per_10s(self) -> float:
        return self.median(lambda s: s.cpu_s) or 0.0

    @property
    def cpu_ms_per_picture(self) -> float:
        """CPU per picture sent (run A: per picture the viewer decoded; nothing was lost)."""
        pictures = self.median(lambda s: s.sent_frames) or self.median(lambda s: s.viewer_frames)
        return self.cpu_per_10s * 1000.0 / pictures if pictures else float("nan")

    @property
    def mbit_per_s(self) -> float | None:
        sent = self.median(lambda s: s.sent_bytes)
        if sent is not None:
            return sent * 8 / 10.0 / 1e6
        return None if self.bits_per_second is None else self.bits_per_second / 1e6


class FrameCounter:
    """Consumes a viewer's frames (so its queue never fills) and counts them by arrival time."""

    def __init__(self, viewer: FeedViewer) -> None:
        self.arrivals: list[float] = []
        self._task = asyncio.create_task(self._count(viewer), name="frame-counter")

    async def _count(self, viewer: FeedViewer) -> None:
        while True:
            self.arrivals.append((await viewer.frames.get()).received)

    def before(self, mono: float) -> int:
        return sum(t < mono for t in self.arrivals)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def watching(
    http: aiohttp.ClientSession, janus_url: str, room: int, feed_id: int
) -> AsyncIterator[FrameCounter]:
    """A subscribed viewer that has decoded its first picture, and its frame counter."""
    viewer = FeedViewer(http, janus_url, room)
    counter: FrameCounter | None = None
    try:
        await viewer.watch(feed_id)
        first = (await viewer.next_frame(FIRST_FRAME_TIMEOUT)).frame
        if (first.width, first.height) != (WIDTH, HEIGHT):
            raise rig.BenchError(f"viewer decoded {first.width}x{first.height}")
        counter = FrameCounter(viewer)
        yield counter
    finally:
        if counter is not None:
            await counter.stop()
        await viewer.close()


async def sample_windows(
    process: rig.Child,
    counter: FrameCounter,
    args: argparse.Namespace,
    extra: Callable[[], Awaitable[dict[str, int]]] | None = None,
) -> tuple[tuple[Sample, Sample], ...]:
    """After the warm-up, `args.windows` back-to-back windows of `args.window` seconds."""

    async def sample() -> Sample:
        mono, cpu, bench = time.monotonic(), rig.cpu_seconds(process.pid), time.process_time()
        more = await extra() if extra is not None else {}
        return Sample(mono, cpu, bench, counter.before(mono), **more)

    await asyncio.sleep(args.warmup)
    samples = [await sample()]
    for _ in range(args.windows):
        await asyncio.sleep(args.window - (time.monotonic() - samples[-1].mono))
        samples.append(await sample())
        if not process.alive():
            raise rig.BenchError(f"{process.name} exited during the window\n{process.log_tail()}")
    return tuple(itertools.pairwise(samples))


async def stopped(process: rig.Child) -> None:
    """Stop `process` (SIGTERM); it must exit with 0."""
    status = await asyncio.to_thread(process.stop)
    if status != 0:
        raise rig.BenchError(f"{process.name} exited with {status}\n{process.log_tail()}")


@dataclass(frozen=True)
class Setup:
    """What every run of this benchmark uses."""

    bench: rig.Rig
    server: servers.Server
    token: str
    http: aiohttp.ClientSession
    recording: Path
    recording_frames: int
    args: argparse.Namespace


async def run_appliance(setup: Setup, *, thread_handoff: bool = False) -> Measured:
    camera = {
        "source": "file", "file": str(setup.recording), "width": WIDTH, "height": HEIGHT,
        "fps": FPS, "bitrate": BITRATE, "keyframe_interval": KEYFRAME_INTERVAL,
    }  # fmt: skip
    name, log, variant = "A: appliance, file source (passthrough)", "file", ""
    if thread_handoff:
        name, log = "A': the same, pictures handed over by a thread", "thread"
        variant = "thread-handoff"
    server = setup.server
    async with feed_watcher(server.url) as watcher:
        appliance = setup.bench.appliance(server, setup.token, camera, f"appliance-{log}", variant)
        feed_id, _ = await watcher.new_feed(appliance)
        async with watching(setup.http, setup.bench.janus.http_url, server.room, feed_id) as seen:
            windows = await sample_windows(appliance, seen, setup.args)
        await stopped(appliance)
        await watcher.next("remove_feed", appliance)
    seconds = setup.recording_frames / FPS
    return Measured(name, windows, setup.recording.stat().st_size * 8 / seconds)


async def run_aiortc_encoder(setup: Setup) -> Measured:
    argv = [
        sys.executable, "-m", "bench.aiortc_encoding_publisher",
        "--janus-url", setup.bench.janus.http_url, "--room", str(setup.server.room),
        "--recording", str(setup.recording), "--fps", str(FPS),
    ]  # fmt: skip
    publisher = setup.bench.child(argv, "aiortc-encoder")
    ready = publisher.expect('"event": "publishing"')
    publisher.start()  # decoding the recording first takes a while
    said = json.loads(await publisher.wait(ready, "publishing", 60.0))
    print(f"  baseline publisher decoded {said['frames']} pictures up front "
          f"({said['decode_cpu_s']:.2f} CPU-s, not in the window)", flush=True)  # fmt: skip

    async def publisher_stats() -> dict[str, int]:
        line = publisher.expect('"event": "stats"')
        publisher.signal(signal.SIGUSR1)
        stats = json.loads(await publisher.wait(line, "stats", 5.0))
        return {"sent_frames": stats["frames"], "skipped": stats["skipped"],
                "sent_bytes": stats["bytes"]}  # fmt: skip

    janus_url, room = setup.bench.janus.http_url, setup.server.room
    async with watching(setup.http, janus_url, room, int(said["feed"])) as seen:
        windows = await sample_windows(publisher, seen, setup.args, publisher_stats)
    await stopped(publisher)
    return Measured("B: aiortc encodes (its own libx264)", windows)


def _each(m: Measured) -> str:
    return ", ".join(f"{v:.3f}" for v in m.each(lambda s: s.cpu_s))


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def figures(results: list[Measured]) -> list[str]:
    header = ("publisher", "CPU-s per 10 s (median)", "each window", "CPU ms per picture",
              "sent fps", "slots skipped per 10 s", "Mbit/s", "viewer fps",
              "viewer process CPU-s per 10 s")  # fmt: skip
    rows = []
    for m in results:
        sent = m.median(lambda s: s.sent_frames)
        rows.append((
            m.name, f"{m.cpu_per_10s:.3f}", _each(m), f"{m.cpu_ms_per_picture:.2f}",
            _fmt(None if sent is None else sent / 10, ".1f"),
            _fmt(m.median(lambda s: s.skipped), ".0f"), _fmt(m.mbit_per_s, ".2f"),
            _fmt((m.median(lambda s: s.viewer_frames) or 0) / 10, ".1f"),
            _fmt(m.median(lambda s: s.bench_cpu_s), ".2f"),
        ))  # fmt: skip
    a, b = results[:2]
    ratio = b.cpu_per_10s / a.cpu_per_10s if a.cpu_per_10s > 0 else float("inf")
    met = {True: "met", False: "NOT met"}
    verdicts = [
        f"ratio B/A: {ratio:.1f}× per 10 s "
        f"({b.cpu_ms_per_picture / a.cpu_ms_per_picture:.1f}× per picture sent)",
        f"target A ≤ {TARGET_CPU_PER_10S} CPU-s per 10 s: {a.cpu_per_10s:.3f}: "
        + met[a.cpu_per_10s <= TARGET_CPU_PER_10S],
        f"target ratio ≥ {TARGET_RATIO:.0f}×: {ratio:.1f}×: " + met[ratio >= TARGET_RATIO],
        *(f"A' - A (the thread hand-over of a camera): {m.cpu_per_10s - a.cpu_per_10s:+.3f} "
          "CPU-s per 10 s" for m in results[2:]),
    ]  # fmt: skip
    return [*table(header, rows), "", *(f"- {line}" for line in verdicts)]


async def measured(title: str, measure: Awaitable[Measured]) -> Measured:
    print(f"run {title} …", flush=True)
    result = await measure
    print(f"  {_each(result)} CPU-s per 10 s", flush=True)
    return result


async def run(bench: rig.Rig, args: argparse.Namespace) -> int:
    recording = bench.workdir / "test-720p30-2M.h264"
    frames = await asyncio.to_thread(
        record_test_stream, recording, width=WIDTH, height=HEIGHT, fps=FPS,
        seconds=args.recording_seconds, bitrate=BITRATE, keyframe_interval=KEYFRAME_INTERVAL,
    )  # fmt: skip
    mbit = recording.stat().st_size * 8 / (frames / FPS) / 1e6
    print(f"recorded {frames} frames ({mbit:.2f} Mbit/s)", flush=True)
    token = secrets.token_hex(8)
    server = await servers.start(bench, servers.ours(), [token], bitrate=BITRATE)
    async with asyncio.timeout(args.time_limit), aiohttp.ClientSession() as http:
        setup = Setup(bench, server, token, http, recording, frames, args)
        results = [
            await measured("A: appliance on the file source", run_appliance(setup)),
            await measured("B: aiortc encoding", run_aiortc_encoder(setup)),
        ]
        if not args.no_thread_handoff:
            handed_over = run_appliance(setup, thread_handoff=True)
            results.append(await measured("A': the recording handed over by a thread", handed_over))
    info = machine_info(bench.load_before)
    info["windows"] = f"warm-up {args.warmup:g} s, then {args.windows} of {args.window:g} s"
    publish(SECTION, DESCRIPTION, info, figures(results), args.write_results)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--windows", type=int, default=3, help="back-to-back windows per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--recording-seconds", type=float, default=10.0)
    parser.add_argument("--time-limit", type=float, default=300.0, help="all runs, seconds")
    parser.add_argument(
        "--no-thread-handoff", action="store_true", help="skip run A' (informational)"
    )
    rig.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.window <= 0 or args.warmup < 0 or args.windows < 1:
        parser.error("--window and --windows must be positive and --warmup not negative")
    return rig.run(lambda bench: run(bench, args), workdir=args.workdir, prefix="cvh-cpu-")


if __name__ == "__main__":
    sys.exit(main())
