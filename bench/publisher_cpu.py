"""Publisher CPU at 1280×720, 30 fps, 2 Mbit/s: the appliance passing the camera's H.264
through, against aiortc encoding the same pictures itself, in one run.

1. Records 10 s of the test stream (x264, as the Pi's encoder makes it: 720p30, 2 Mbit/s,
   an IDR every 60 frames) into the run's folder.
2. Starts a local Janus and the slot server (slot 0 open; room bitrate = 2 Mbit/s, so
   Janus's REMB asks for exactly the stream's rate and never less).
3. Run A: `cvh-camera appliance` with `camera.source: file` on that recording (what a
   camera with a hardware encoder costs us: no encoding in the process). Once the
   receiver hears `new_feed`, a viewer in this process subscribes and decodes; after the
   warm-up, the appliance's CPU time (utime + stime of every thread, /proc/<pid>/stat) is
   read over three back-to-back 10 s windows (the figure is their median).
4. Run B: `bench/aiortc_encoding_publisher.py` decodes the same recording into pictures up
   front and publishes them into the same room at 30 fps, letting aiortc's own H.264
   encoder encode them (its bitrate follows the room's REMB: 2 Mbit/s). Same viewer, same
   warm-up, same windows.
5. Run A' (for information; `--no-thread-handoff` skips it): A again, except that a thread
   of its own replays the recording and hands each picture over to the event loop, as
   picamera2's encoder thread does on a Pi (`bench/appliance_variant.py`). The file source
   itself paces on the event loop, so A' - A is what the hand-over costs a camera.

The viewer (in this process) is not counted. Prints CPU seconds per 10 s for both, their
ratio and the targets: A ≤ 0.2 CPU-s per 10 s, ratio ≥ 15×.

    python bench/publisher_cpu.py [--window 10] [--windows 3] [--warmup 5] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from appliance_rig import (
    BenchError,
    Child,
    Rig,
    appliance_argv,
    appliance_config,
    cancel_on_sigterm,
    cpu_seconds,
    machine_info,
    receiver,
    replace_section,
    run_with_workdir,
    stamp,
    start_janus,
    start_server,
)

from cvh_camera.appliance.sources.synthetic import record_test_stream
from tests.support.viewer import FeedViewer

BENCH_DIR = Path(__file__).resolve().parent
SECTION = "## Publisher CPU (appliance)"
WIDTH, HEIGHT, FPS, BITRATE, KEYFRAME_INTERVAL = 1280, 720, 30, 2_000_000, 60
TARGET_CPU_PER_10S = 0.2
TARGET_RATIO = 15.0
FIRST_FRAME_TIMEOUT = 15.0


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
class Window:
    start: Sample
    end: Sample

    @property
    def wall_s(self) -> float:
        return self.end.mono - self.start.mono

    def per_10s(self, pick: Callable[[Sample], float | int | None]) -> float | None:
        first, last = pick(self.start), pick(self.end)
        if first is None or last is None:
            return None
        return (last - first) * 10.0 / self.wall_s


@dataclass(frozen=True)
class Measured:
    name: str
    windows: tuple[Window, ...]
    bits_per_second: float | None = None  # the recording's (run A); run B's come from samples

    def median(self, pick: Callable[[Sample], float | int | None]) -> float | None:
        values = [w.per_10s(pick) for w in self.windows]
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    @property
    def cpu_per_10s(self) -> float:
        return self.median(lambda s: s.cpu_s) or 0.0

    @property
    def each_cpu_per_10s(self) -> list[float]:
        return [w.per_10s(lambda s: s.cpu_s) or 0.0 for w in self.windows]

    @property
    def cpu_ms_per_picture(self) -> float:
        """CPU per picture sent (run A: per picture the viewer decoded; nothing was lost)."""
        pictures = self.median(lambda s: s.sent_frames)
        if pictures is None:
            pictures = self.median(lambda s: s.viewer_frames)
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
            decoded = await viewer.frames.get()
            self.arrivals.append(decoded.received)

    def between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.arrivals)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def watching(
    http: aiohttp.ClientSession, rig: Rig, feed_id: int
) -> AsyncIterator[FrameCounter]:
    """A subscribed viewer that has decoded its first picture, and its frame counter."""
    viewer = FeedViewer(http, rig.janus_url, rig.room)
    counter: FrameCounter | None = None
    try:
        await viewer.watch(feed_id)
        first = await viewer.next_frame(FIRST_FRAME_TIMEOUT)
        if (first.frame.width, first.frame.height) != (WIDTH, HEIGHT):
            raise BenchError(f"viewer decoded {first.frame.width}x{first.frame.height}")
        counter = FrameCounter(viewer)
        yield counter
    finally:
        if counter is not None:
            await counter.stop()
        await viewer.close()


async def sample_windows(
    child: Child,
    counter: FrameCounter,
    args: argparse.Namespace,
    extra: Callable[[], Awaitable[dict[str, int]]] | None = None,
) -> tuple[Window, ...]:
    """After the warm-up, `args.windows` back-to-back windows of `args.window` seconds."""

    async def sample() -> Sample:
        mono, cpu, bench = time.monotonic(), cpu_seconds(child.pid), time.process_time()
        frames = counter.between(float("-inf"), mono)
        more = await extra() if extra is not None else {}
        return Sample(mono, cpu, bench, frames, **more)

    await asyncio.sleep(args.warmup)
    samples = [await sample()]
    for _ in range(args.windows):
        await asyncio.sleep(args.window - (time.monotonic() - samples[-1].mono))
        samples.append(await sample())
        if not child.alive():
            raise BenchError(f"{child.argv[1:4]} exited during the window\n{child.log_tail()}")
    return tuple(Window(a, b) for a, b in itertools.pairwise(samples))


async def run_appliance(
    rig: Rig, http: aiohttp.ClientSession, recording: Path, args: argparse.Namespace,
    cleanup: contextlib.ExitStack, *, thread_handoff: bool = False,
) -> Measured:  # fmt: skip
    camera = {
        "source": "file", "file": str(recording), "width": WIDTH, "height": HEIGHT,
        "fps": FPS, "bitrate": BITRATE, "keyframe_interval": KEYFRAME_INTERVAL,
    }  # fmt: skip
    config = appliance_config(rig, rig.workdir / "appliance-file.yaml", camera)
    if thread_handoff:
        argv = [sys.executable, str(BENCH_DIR / "appliance_variant.py"),
                "--variant", "thread-handoff", "--config", str(config)]  # fmt: skip
        name, log = "A': the same, pictures handed over by a thread", "appliance-thread.log"
    else:
        argv = appliance_argv(config)
        name, log = "A: appliance, file source (passthrough)", "appliance-file.log"
    child = Child(argv, rig.workdir / log)
    cleanup.callback(child.stop)
    async with receiver(rig) as slot_server:
        child.start()
        feed_id = await slot_server.new_feed(child)
        async with watching(http, rig, feed_id) as counter:
            windows = await sample_windows(child, counter, args)
        status = await asyncio.to_thread(child.stop)
        await slot_server.remove_feed()
    if status != 0:
        raise BenchError(f"{argv[1:4]} exited with {status} on SIGTERM\n{child.log_tail()}")
    bits = recording_bitrate(recording, recording_frames(args) / FPS)
    return Measured(name, windows, bits)


async def run_aiortc_encoder(
    rig: Rig, http: aiohttp.ClientSession, recording: Path, args: argparse.Namespace,
    cleanup: contextlib.ExitStack,
) -> Measured:  # fmt: skip
    argv = [
        sys.executable, str(BENCH_DIR / "aiortc_encoding_publisher.py"),
        "--janus-url", rig.janus_url, "--room", str(rig.room),
        "--recording", str(recording), "--fps", str(FPS),
    ]  # fmt: skip
    child = Child(argv, rig.workdir / "aiortc-encoder.log", stdout_pipe=True)
    cleanup.callback(child.stop)
    child.start()
    ready = await child.read_json_line(60.0)  # decoding the recording first takes a while
    if ready.get("event") != "publishing":
        raise BenchError(f"unexpected first line from the baseline publisher: {ready}")
    print(f"  baseline publisher decoded {ready['frames']} pictures up front "
          f"({ready['decode_cpu_s']:.2f} CPU-s, not in the window)", flush=True)  # fmt: skip

    async def publisher_stats() -> dict[str, int]:
        child.signal(signal.SIGUSR1)
        stats = await child.read_json_line(5.0)
        return {"sent_frames": stats["frames"], "skipped": stats["skipped"],
                "sent_bytes": stats["bytes"]}  # fmt: skip

    async with watching(http, rig, int(ready["feed"])) as counter:
        windows = await sample_windows(child, counter, args, publisher_stats)
    status = await asyncio.to_thread(child.stop)
    if status != 0:
        raise BenchError(f"the baseline publisher exited with {status}\n{child.log_tail()}")
    return Measured("B: aiortc encodes (its own libx264)", windows)


def recording_bitrate(recording: Path, seconds: float) -> float:
    return recording.stat().st_size * 8 / seconds


def recording_frames(args: argparse.Namespace) -> int:
    seconds: float = args.recording_seconds
    return max(1, round(seconds * FPS))


async def run(
    args: argparse.Namespace, workdir: Path, cleanup: contextlib.ExitStack
) -> list[Measured]:
    cancel_on_sigterm()
    recording = workdir / "test-720p30-2M.h264"
    frames = await asyncio.to_thread(
        record_test_stream, recording, width=WIDTH, height=HEIGHT, fps=FPS,
        seconds=args.recording_seconds, bitrate=BITRATE, keyframe_interval=KEYFRAME_INTERVAL,
    )  # fmt: skip
    mbit = recording_bitrate(recording, frames / FPS) / 1e6
    print(f"recorded {frames} frames ({mbit:.2f} Mbit/s)", flush=True)
    janus = start_janus(workdir, cleanup)
    rig = await start_server(workdir, janus, BITRATE, cleanup)
    async with asyncio.timeout(args.time_limit), aiohttp.ClientSession() as http:
        print("run A: appliance on the file source …", flush=True)
        a = await run_appliance(rig, http, recording, args, cleanup)
        print(f"  {_each(a)} CPU-s per 10 s", flush=True)
        print("run B: aiortc encoding …", flush=True)
        b = await run_aiortc_encoder(rig, http, recording, args, cleanup)
        print(f"  {_each(b)} CPU-s per 10 s", flush=True)
        results = [a, b]
        if not args.no_thread_handoff:
            print("run A': the recording handed over by a thread …", flush=True)
            a2 = await run_appliance(rig, http, recording, args, cleanup, thread_handoff=True)
            print(f"  {_each(a2)} CPU-s per 10 s", flush=True)
            results.append(a2)
    return results


def _each(m: Measured) -> str:
    return ", ".join(f"{v:.3f}" for v in m.each_cpu_per_10s)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(results: list[Measured]) -> list[str]:
    header = ("publisher", "CPU-s per 10 s (median)", "each window", "CPU ms per picture",
              "sent fps", "slots skipped per 10 s", "Mbit/s", "viewer fps",
              "viewer process CPU-s per 10 s")  # fmt: skip
    rows = []
    for m in results:
        sent = m.median(lambda s: s.sent_frames)
        rows.append((
            m.name, f"{m.cpu_per_10s:.3f}", _each(m), f"{m.cpu_ms_per_picture:.2f}",
            _fmt(None if sent is None else sent / 10, ".1f"),
            _fmt(m.median(lambda s: s.skipped), ".0f"),
            _fmt(m.mbit_per_s, ".2f"),
            _fmt((m.median(lambda s: s.viewer_frames) or 0) / 10, ".1f"),
            _fmt(m.median(lambda s: s.bench_cpu_s), ".2f"),
        ))  # fmt: skip
    return [
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def verdicts(results: list[Measured]) -> list[str]:
    a, b = results[:2]
    ratio = b.cpu_per_10s / a.cpu_per_10s if a.cpu_per_10s > 0 else float("inf")
    per_picture = b.cpu_ms_per_picture / a.cpu_ms_per_picture
    handoff = [
        f"A' - A (the thread hand-over of a camera): {m.cpu_per_10s - a.cpu_per_10s:+.3f} "
        "CPU-s per 10 s"
        for m in results[2:]
    ]
    return [
        f"ratio B/A: {ratio:.1f}× per 10 s ({per_picture:.1f}× per picture sent)",
        f"target A ≤ {TARGET_CPU_PER_10S} CPU-s per 10 s: {a.cpu_per_10s:.3f}: "
        + ("met" if a.cpu_per_10s <= TARGET_CPU_PER_10S else "NOT met"),
        f"target ratio ≥ {TARGET_RATIO:.0f}×: {ratio:.1f}×: "
        + ("met" if ratio >= TARGET_RATIO else "NOT met"),
        *handoff,
    ]


DESCRIPTION = """\
`bench/publisher_cpu.py` records 10 s of the test stream (1280×720, 30 fps, 2 Mbit/s, an IDR
every 60 frames), starts a local Janus and the slot server (room bitrate 2 Mbit/s, so
Janus's REMB asks for the stream's own rate), then measures three publishers one after the
other, each with one aiortc viewer (in the benchmark process, not counted) subscribed and
decoding: CPU time (utime + stime of all threads, `/proc/<pid>/stat`, 10 ms ticks) over
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
  that hands each picture to the event loop (`bench/appliance_variant.py --variant
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


def markdown(results: list[Measured], info: dict[str, str], args: argparse.Namespace) -> str:
    lines = [
        DESCRIPTION, "", stamp(), "",
        *(f"- {key}: {value}" for key, value in info.items()),
        f"- warm-up {args.warmup:g} s, then {args.windows} windows of {args.window:g} s", "",
        *table(results), "",
        *(f"- {line}" for line in verdicts(results)),
    ]  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--windows", type=int, default=3, help="back-to-back windows per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--recording-seconds", type=float, default=10.0)
    parser.add_argument("--time-limit", type=float, default=300.0, help="both runs, seconds")
    parser.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument(
        "--no-thread-handoff", action="store_true", help="skip run A' (informational)"
    )
    parser.add_argument("--workdir", type=Path, help="keep recording, configs and logs here")
    args = parser.parse_args(argv)
    if args.window <= 0 or args.warmup < 0 or args.windows < 1:
        parser.error("--window and --windows must be positive and --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    outcome = run_with_workdir(
        args.workdir, "cvh-cpu-", lambda workdir, cleanup: run(args, workdir, cleanup)
    )
    if isinstance(outcome, int):
        return outcome
    results = outcome
    info = machine_info(load_before)
    print()
    for line in table(results):
        print(line)
    print()
    for line in verdicts(results):
        print(line)
    for key, value in info.items():
        print(f"{key}: {value}")
    if args.write_results:
        path = BENCH_DIR / "RESULTS.md"
        replace_section(path, SECTION, markdown(results, info, args))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
