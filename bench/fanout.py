"""Fan-out of the slot server, beside the original: how fast N receivers learn of a feed.

How it is measured: DESCRIPTION below (it heads the section in bench/RESULTS.md, and --help).

    python -m bench.fanout [--counts 100,1000,3000] [--rounds 5]
                           [--baseline …/camera-server/dist/server.js]
                           [--uvloop/--no-uvloop] [--server-gc-threshold T0,T1,T2]
                           [--pin/--no-pin] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench import rig, servers
from bench.clients import call_ok, janus_publisher, socketio_client
from bench.receivers import ClientError, ReceiverPool
from bench.results import publish, table

SECTION = "## Fan-out (slot server)"
TARGETS_MS = {1000: 45.0, 3000: 120.0}  # every receiver informed within, max over rounds
# A pause between rounds, not a wait for anything: the next round's times should not include
# the server's closing of the previous sender (every receiver already has its remove_feed).
ROUND_GAP = 0.2
DESCRIPTION = """\
`python -m bench.fanout` measures our slot server and, with `--baseline`, the original
Node.js camera server side by side in the same run: for each N the original first, then
ours, each a fresh process (pinned to its own CPU with `--pin`, the same for both) started
the way the original is deployed (the legacy JSON configuration in `CONFIG_PATH`, slot 0
activated by `activate_slot` on its stdin), on the same local Janus (a room of its own
each). N websocket receivers negotiate like Chromium: they offer `permessage-deflate;
client_max_window_bits` and inflate what the server compresses. They are a minimal
Engine.IO v4 / socket.io v5 client (`bench/receivers.py`, one asyncio protocol each,
timestamped on arrival with CLOCK_MONOTONIC), not python-socketio's: 3000
`socketio.AsyncClient`s in one process cost 230 µs of CPU per receiver and event (measured
on a 2-core AMD EPYC, 2026-12-03), so a broadcast to 3000 would read 610-720 ms, the
client's own time, against 14 µs (41 ms) for these. Then rounds of a sender
(python-socketio's `AsyncClient`) doing what a sender page does: `sender_init`, join the
Janus room as a publisher (no media), `set_feed_id` with that publisher's ids, leave.
Median (p50) and max are over the rounds (one warm-up round first, not counted).

- *connect*: until all N receivers have joined the default namespace.
- *new_feed*: from sending `set_feed_id` to the **last** receiver's `new_feed`.
- *remove_feed*: from the sender starting to leave to the last receiver's `remove_feed`.
- *RSS growth*: the server's VmRSS after connecting N minus before; *KiB/receiver*: that
  growth per receiver.
- *permessage-deflate*: how the server answered the receivers' offer.
- *full GCs*: generation-2 collections in our server during the rounds (longest).
- *ours/original*: below 1 means ours is faster or smaller.

Targets (ours): 1000 receivers informed within 45 ms, 3000 within 120 ms (max).

What makes ours faster and smaller than the original (issue 9; `server/engine.py`,
`server/websocket.py`): websocket compression is off (python-engineio accepted every
browser's permessage-deflate offer, which cost a zlib context of ~125 KB per receiver and
a compression per message and receiver); a broadcast is encoded once and written to each
receiver's transport as the same frame, with no writer task, queue wake-up or timer per
receiver; a receiver's ping is a timer, not a sleeping task; a websocket client waits in
one coroutine frame of ours (served from `write_eof`, so engineio's request coroutines
return once the socket is up), and socket.io keeps two keys of its WSGI environ. Python
objects per receiver went from 20.9 to 17.8 KiB (tracemalloc, 1000 receivers with
Chromium's headers). Before these changes, measured side by side with Node's
socket.io-client as receivers (issue 9's table, not this script), ours took 2 to 4 times as
long as the original for new_feed and grew 2.8 (1000) to 4.6 (3000) times as much."""


class Arrivals:
    """When each receiver got the one event currently being measured."""

    def __init__(self, receivers: int) -> None:
        self._event, self._expected = "", receivers
        self._times: dict[int, float] = {}
        self._complete = asyncio.Event()

    def expect(self, event: str) -> None:
        """Start a measurement: wait for `event` at every receiver."""
        self._event, self._times = event, {}
        self._complete.clear()

    def record(self, receiver: int, event: str, data: Any, at: float) -> None:
        if event == self._event and receiver not in self._times:
            self._times[receiver] = at
            if len(self._times) >= self._expected:
                self._complete.set()

    async def wait(self) -> list[float]:
        """The arrival times, sorted, once every expected receiver has the event."""
        try:
            async with asyncio.timeout(rig.STEP_TIMEOUT):
                await self._complete.wait()
        except TimeoutError:
            got, want = len(self._times), self._expected
            raise ClientError(f"{self._event}: {got} of {want} receivers in time") from None
        return sorted(self._times.values())


@dataclass(frozen=True)
class Round:
    """One set_feed_id / disconnect of the sender, in milliseconds."""

    started_s: float  # seconds after the last receiver joined
    new_feed_last: float  # set_feed_id ack → last receiver's new_feed
    new_feed_median: float  # set_feed_id ack → the median receiver's new_feed
    new_feed_from_request: float  # set_feed_id sent → last receiver's new_feed
    remove_feed_last: float  # sender's disconnect → last receiver's remove_feed
    remove_feed_median: float
    ack_rtt: float  # set_feed_id sent → ack

    def text(self) -> str:
        return (
            f"t+{self.started_s:5.1f} s  new_feed from request {self.new_feed_from_request:6.1f}"
            f" from ack {self.new_feed_last:6.1f} median {self.new_feed_median:6.1f}  remove_feed"
            f" last {self.remove_feed_last:6.1f} median {self.remove_feed_median:6.1f}  ack rtt"
            f" {self.ack_rtt:5.1f} ms"
        )


@dataclass(frozen=True)
class CountResult:
    """Everything measured for one server at one N."""

    server: str  # "ours" or "original"
    count: int
    connect_s: float
    rss_before_kib: int
    rss_after_kib: int
    deflate: str  # how the server answered permessage-deflate
    rounds: tuple[Round, ...]  # counted (after the warm-up)
    server_full_gcs: tuple[float, ...] | None  # ms each, during the rounds; None: not logged

    def stat(self, pick: Callable[[Round], float]) -> tuple[float, float]:
        """Median and maximum of one figure over the counted rounds."""
        values = [pick(r) for r in self.rounds]
        return statistics.median(values), max(values)

    @property
    def rss_growth_kib(self) -> int:
        return self.rss_after_kib - self.rss_before_kib


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collection in the load generator while it takes times (not the server's)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def one_round(
    server: servers.Server, token: str, arrivals: Arrivals, feed: dict[str, int], since: float
) -> Round:
    """One sender: sender_init, set_feed_id (timed until every receiver has new_feed), leave
    (timed until every receiver has remove_feed)."""
    async with socketio_client(server.url) as sender:
        await call_ok(sender, "sender_init", {"slot": 0, "token": token})
        arrivals.expect("new_feed")
        sent = time.monotonic()
        await call_ok(sender, "set_feed_id", feed)
        acked = time.monotonic()
        added = await arrivals.wait()
        arrivals.expect("remove_feed")
        left = time.monotonic()
        await sender.disconnect()
    removed = await arrivals.wait()
    return Round(
        started_s=sent - since,
        new_feed_last=_ms(added[-1] - acked),
        new_feed_median=_ms(statistics.median(added) - acked),
        new_feed_from_request=_ms(added[-1] - sent),
        remove_feed_last=_ms(removed[-1] - left),
        remove_feed_median=_ms(statistics.median(removed) - left),
        ack_rtt=_ms(acked - sent),
    )


def _ms(seconds: float) -> float:
    return seconds * 1000.0


async def measure_count(
    bench: rig.Rig, kind: servers.ServerKind, count: int, args: argparse.Namespace
) -> CountResult:
    """Every figure of one server at N = `count`."""
    token = secrets.token_hex(8)
    server = await servers.start(bench, kind, [token], label=f"-{count}")
    arrivals, rounds = Arrivals(count), []
    pool = ReceiverPool(server.port, arrivals)
    try:
        await asyncio.sleep(args.settle)  # a pause to read RSS in quiet, not a wait
        rss_before, started = rig.rss_kib(server.process.pid), time.monotonic()
        await pool.connect(count, args.connect_concurrency, args.connect_timeout)
        connected = time.monotonic()
        await asyncio.sleep(args.settle)
        rss_after, log_offset = rig.rss_kib(server.process.pid), server.process.log_size
        async with aiohttp.ClientSession() as http:
            for number in range(args.warmup + args.rounds):
                async with janus_publisher(http, bench.janus.http_url, server.room) as feed:
                    with _gc_paused():
                        rounds.append(await one_round(server, token, arrivals, feed, connected))
                label = "warm-up" if number < args.warmup else f"round {number - args.warmup + 1}"
                print(f"  {label:8} {rounds[-1].text()}", flush=True)
                await asyncio.sleep(ROUND_GAP)
        full_gcs = server.full_gcs_since(log_offset)
    except Exception:
        print(f"--- {kind.name} server log (N={count}) ---\n{server.process.log_tail()}")
        raise
    finally:
        deflate = pool.deflate()
        pool.close()
        await asyncio.to_thread(server.process.stop)
    return CountResult(
        kind.name, count, connected - started, rss_before, rss_after, deflate,
        tuple(rounds[args.warmup :]), full_gcs,
    )  # fmt: skip


def _new_feed(r: Round) -> float:
    return r.new_feed_from_request


def _remove_feed(r: Round) -> float:
    return r.remove_feed_last


# The compared figures: name, how to get it, format.
FIGURES: tuple[tuple[str, Callable[[CountResult], float], str], ...] = (
    ("connect s", lambda c: c.connect_s, "{:.2f}"),
    ("new_feed p50 ms", lambda c: c.stat(_new_feed)[0], "{:.1f}"),
    ("new_feed max ms", lambda c: c.stat(_new_feed)[1], "{:.1f}"),
    ("remove_feed p50 ms", lambda c: c.stat(_remove_feed)[0], "{:.1f}"),
    ("remove_feed max ms", lambda c: c.stat(_remove_feed)[1], "{:.1f}"),
    ("RSS growth MiB", lambda c: c.rss_growth_kib / 1024, "{:.1f}"),
    ("KiB/receiver", lambda c: c.rss_growth_kib / c.count, "{:.1f}"),
)


def comparison_rows(results: Sequence[CountResult]) -> list[tuple[str, ...]]:
    """One row per N and figure: original, ours, ours/original (N with both servers only)."""
    by_key = {(r.count, r.server): r for r in results}
    rows: list[tuple[str, ...]] = []
    for count in sorted({r.count for r in results}):
        ours, original = by_key.get((count, "ours")), by_key.get((count, "original"))
        if ours is None or original is None:
            continue
        for name, pick, fmt in FIGURES:
            mine, theirs = pick(ours), pick(original)
            ratio = f"{mine / theirs:.2f}" if theirs > 0 else "—"
            rows.append((str(count), name, fmt.format(theirs), fmt.format(mine), ratio))
    return rows


def detail_rows(results: Sequence[CountResult]) -> list[tuple[str, ...]]:
    """One row per server and N, every figure."""
    rows = []
    for r in results:
        gcs = r.server_full_gcs
        gc_text = "—" if gcs is None else f"{len(gcs)} ({max(gcs, default=0):.0f})"
        rows.append((
            str(r.count), r.server, *(fmt.format(pick(r)) for _, pick, fmt in FIGURES),
            f"{r.stat(lambda x: x.ack_rtt)[0]:.1f}", f"{r.rss_before_kib / 1024:.1f}",
            r.deflate, gc_text,
        ))  # fmt: skip
    return rows


def target_lines(results: Sequence[CountResult]) -> list[str]:
    lines = []
    for r in results:
        target = TARGETS_MS.get(r.count)
        if target is None:
            continue
        worst = {"new_feed": r.stat(_new_feed)[1], "remove_feed": r.stat(_remove_feed)[1]}
        verdict = "met" if max(worst.values()) <= target else "NOT met"
        figures = ", ".join(f"{event} max {ms:.1f} ms" for event, ms in worst.items())
        lines.append(f"{r.server}, N={r.count}, target {target:.0f} ms: {figures}: {verdict}")
    return lines


def figures(results: Sequence[CountResult]) -> list[str]:
    """The section's tables and verdicts."""
    comparison = comparison_rows(results)
    header = ("N", "server", *(name for name, _, _ in FIGURES), "ack rtt p50 ms",
              "RSS before MiB", "permessage-deflate", "full GCs (max ms)")  # fmt: skip
    lines = [*table(("N", "figure", "original", "ours", "ours/original"), comparison, 2), ""]
    lines = lines if comparison else []
    lines += [*table(header, detail_rows(results), text=2), ""]
    return lines + [f"- {line}" for line in target_lines(results)]


async def run(bench: rig.Rig, args: argparse.Namespace) -> int:
    """Each N in turn, each server in turn at that N."""
    results = []
    async with asyncio.timeout(args.time_limit):
        for count in args.counts:
            for kind in servers.kinds(args):
                print(f"{kind.name}, N={count}", flush=True)
                result = await measure_count(bench, kind, count, args)
                median, worst = result.stat(_new_feed)
                print(f"  connect {result.connect_s:.2f} s, new_feed p50 {median:.1f} ms "
                      f"max {worst:.1f} ms", flush=True)  # fmt: skip
                results.append(result)
    info = servers.run_info(bench, args)
    publish(SECTION, DESCRIPTION, info, figures(results), args.write_results)
    return 0


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 100,1000: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", type=_counts, default=[100, 1000, 3000])
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds per N")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds per N first")
    parser.add_argument("--settle", type=float, default=1.0, help="pause before reading RSS")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="whole run, seconds")
    servers.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    return rig.run(
        lambda bench: run(bench, args), workdir=args.workdir, prefix="cvh-fanout-", pin=args.pin
    )


if __name__ == "__main__":
    sys.exit(main())
