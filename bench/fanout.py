"""Fan-out of the slot server, beside the original: how fast N receivers learn of a feed.

For each N and each server (with `--baseline`, the original Node.js server first, then
ours): a fresh server process on a local Janus, started as the original is deployed (the
legacy JSON configuration in CONFIG_PATH; slot 0 activated on its stdin), N lightweight
websocket receivers (`eio_receivers.py`, negotiating permessage-deflate as Chromium does),
then rounds of a sender (the same lightweight client, so that its ack is timestamped on
arrival like the receivers' events) doing what a sender page does: `sender_init`, join the
Janus room as a publisher (no media: the servers look at the room, not at the stream),
`set_feed_id` with that publisher's ids, then leave. Measured:

- connect: wall time until all N receivers have joined the default namespace;
- new_feed: from sending `set_feed_id` to the last receiver's `new_feed` (and, printed per
  round, from the arrival of its ack);
- remove_feed: from the sender starting to disconnect to the last receiver's `remove_feed`;
- the server's RSS before and after connecting N; its growth per receiver.

Every time is CLOCK_MONOTONIC (`time.monotonic()`), shared by all processes. Each figure is
per round; the tables give the median and the maximum over the rounds (after one warm-up
round, which is shown but not counted), and ours/original for each figure.

    python bench/fanout.py [--counts 100,1000,3000] [--rounds 5]
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import aiohttp
from eio_receivers import Arrivals, ClientError, ReceiverPool, call_ok, connect_client
from fanout_report import CountResult, Round, print_report, write_results
from procs import (
    BenchEnv,
    ServerKind,
    ServerProcess,
    T,
    bench_env,
    cancelled_by_sigterm,
    cpus_text,
    describe_original,
    exit_on_sigterm,
    loop_factory,
    machine,
    original,
    ours,
    raise_nofile,
    rss_kib,
    write_legacy_config,
)

from cvh_camera.janus import JanusSession
from cvh_camera.janus_local import find_free_port

HOST = "127.0.0.1"
SIO_PATH = "/socket.io"  # both servers' default (the original's socket.io: /socket.io/)
STEP_TIMEOUT = 15.0  # one round trip, one fan-out, the server coming up
# A pause between rounds, not a wait for anything: the next round's times should not include
# the server's closing of the previous sender (every receiver already has its remove_feed).
ROUND_GAP = 0.2


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


def _ms(seconds: float) -> float:
    return seconds * 1000.0


@contextlib.asynccontextmanager
async def janus_publisher(
    http: aiohttp.ClientSession, janus_url: str, room: int
) -> AsyncIterator[dict[str, int]]:
    """A publisher in `room` (joined, no media), as a sender page is before `set_feed_id`:
    yields that request's feedId, sessionId and videoroomId. Leaves the room at the end."""
    async with asyncio.timeout(STEP_TIMEOUT):
        session = await JanusSession.create(http, janus_url, request_timeout=STEP_TIMEOUT)
    try:
        handle = await session.attach("janus.plugin.videoroom")
        join = {"request": "join", "ptype": "publisher", "room": room, "pin": ""}
        joined, _ = await handle.message(join, timeout=STEP_TIMEOUT)
        if joined.get("videoroom") != "joined" or not isinstance(joined.get("id"), int):
            raise ClientError(f"Janus join refused: {joined}")
        yield {"feedId": joined["id"], "sessionId": session.id, "videoroomId": handle.id}
    finally:
        await session.destroy()


async def one_round(
    port: int, token: str, arrivals: Arrivals, count: int, feed: dict[str, int], since: float
) -> Round:
    """One sender: sender_init, set_feed_id (timed until every receiver has new_feed), leave
    (timed until every receiver has remove_feed)."""
    async with asyncio.timeout(STEP_TIMEOUT):
        sender = await connect_client(HOST, port, SIO_PATH, -1, arrivals=None)
    try:
        await call_ok(sender, "sender_init", {"slot": 0, "token": token}, STEP_TIMEOUT)
        arrivals.expect("new_feed", count)
        sent = time.monotonic()
        acked = await call_ok(sender, "set_feed_id", feed, STEP_TIMEOUT)
        added = await arrivals.wait(STEP_TIMEOUT)
        arrivals.expect("remove_feed", count)
        left = time.monotonic()
        sender.leave()
    finally:
        sender.close()
    removed = await arrivals.wait(STEP_TIMEOUT)
    return Round(
        started_s=sent - since,
        new_feed_last=_ms(added[-1] - acked),
        new_feed_median=_ms(statistics.median(added) - acked),
        new_feed_from_request=_ms(added[-1] - sent),
        remove_feed_last=_ms(removed[-1] - left),
        remove_feed_median=_ms(statistics.median(removed) - left),
        ack_rtt=_ms(acked - sent),
    )


async def start_server(
    kind: ServerKind, label: str, tokens: Sequence[str], env: BenchEnv, cleanup: ExitStack
) -> tuple[ServerProcess, int, int]:
    """A fresh server on its own port and Janus room, ready, slot i activated with
    `tokens[i]` on its stdin: (the server, its port, its room). `cleanup` stops it."""
    port, room = find_free_port(), next(env.rooms)
    config_path = env.workdir / f"{kind.name}-{label}.json"
    write_legacy_config(config_path, port, env.janus_url, env.admin_key, room)
    server = ServerProcess(kind, config_path, env.workdir / f"{kind.name}-{label}.log", env.cpus)
    cleanup.callback(server.stop)
    server.start()
    await server.wait_ready(STEP_TIMEOUT)
    for slot, token in enumerate(tokens):
        await server.activate(slot, token, STEP_TIMEOUT)
    return server, port, room


async def connect_receivers(
    server: ServerProcess, pool: ReceiverPool, count: int, args: argparse.Namespace
) -> tuple[float, int, int]:
    """Connect `count` receivers: (seconds until all joined, RSS before KiB, RSS after KiB).

    Each RSS is read after `--settle` seconds of quiet (a pause to measure, not to wait for)."""
    await asyncio.sleep(args.settle)
    rss_before = rss_kib(server.pid)
    started = time.monotonic()
    await pool.connect(count, args.connect_concurrency, timeout=args.connect_timeout)
    connect_s = time.monotonic() - started
    await asyncio.sleep(args.settle)
    return connect_s, rss_before, rss_kib(server.pid)


async def measure_count(
    kind: ServerKind,
    count: int,
    args: argparse.Namespace,
    env: BenchEnv,
    cleanup: ExitStack,
) -> CountResult:
    """Every figure of one server at N = `count`."""
    token = secrets.token_hex(8)
    server, port, room = await start_server(kind, str(count), [token], env, cleanup)
    arrivals = Arrivals()
    pool = ReceiverPool(HOST, port, SIO_PATH, arrivals)
    try:
        connect_s, rss_before, rss_after = await connect_receivers(server, pool, count, args)
        connected = time.monotonic()
        log_offset = server.log_size()
        rounds = []
        async with aiohttp.ClientSession() as http:
            for _ in range(args.warmup + args.rounds):
                async with janus_publisher(http, env.janus_url, room) as feed:
                    with _gc_paused():
                        one = await one_round(port, token, arrivals, count, feed, connected)
                rounds.append(one)
                await asyncio.sleep(ROUND_GAP)
        full_gcs = server.full_gcs_since(log_offset) if kind.logs_gc else None
    except Exception:
        print(f"--- {kind.name} server log (N={count}) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        deflate = pool.deflate()
        pool.close()
        await asyncio.to_thread(server.stop)
    return CountResult(
        kind.name,
        count,
        connect_s,
        rss_before,
        rss_after,
        deflate,
        tuple(rounds[: args.warmup]),
        tuple(rounds[args.warmup :]),
        full_gcs,
    )


def server_kinds(args: argparse.Namespace) -> list[ServerKind]:
    """The servers to measure per N, in order: the original (if asked for), then ours."""
    kinds = [ours(args.uvloop, args.server_gc_threshold)]
    if args.baseline is not None:
        kinds.insert(0, original(args.baseline))
    return kinds


async def run_counts(
    kinds: list[ServerKind],
    args: argparse.Namespace,
    env: BenchEnv,
    cleanup: ExitStack,
) -> list[CountResult]:
    """Each N in turn, each server in turn at that N."""
    results = []
    async with asyncio.timeout(args.time_limit):
        for count in args.counts:
            for kind in kinds:
                result = await measure_count(kind, count, args, env, cleanup)
                new_median, new_max = result.stat(lambda r: r.new_feed_from_request)
                print(
                    f"{kind.name}, N={count}: connect {result.connect_s:.2f} s, "
                    f"new_feed p50 {new_median:.1f} ms max {new_max:.1f} ms",
                    flush=True,
                )
                results.append(result)
    return results


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 100,1000: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", type=_counts, default=[100, 1000, 3000])
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="PATH",
        help="the original server's built dist/server.js: measure it too, before ours",
    )
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds per N")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds per N first")
    parser.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the server's event loop: uvloop (default) or asyncio's own",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each server on the last CPU, load generator and Janus on the others",
    )
    parser.add_argument(
        "--server-gc-threshold",
        default="",
        metavar="T0,T1,T2",
        help="the server's gc.set_threshold (default: Python's own, 700,10,10)",
    )
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=1.0, help="pause before reading RSS")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="whole run, seconds")
    parser.add_argument(
        "--write-results",
        action="store_true",
        help="rewrite the Fan-out section of bench/RESULTS.md with this run",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep configs and logs here (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    return args


def run_info(args: argparse.Namespace, env: BenchEnv) -> dict[str, str]:
    """The machine and how each process ran, for the report."""
    info = machine()
    info["load generator"] = f"{loop_factory().__module__} loop, {cpus_text(env.load_cpus)}"
    server = "uvloop" if args.uvloop else "asyncio"
    server += " loop"
    if args.server_gc_threshold:
        server += f", gc.set_threshold({args.server_gc_threshold})"
    info["ours"] = f"bench/serve.py, {server}, {cpus_text(env.cpus)}"
    if args.baseline is not None:
        info["original"] = f"{describe_original(args.baseline)}, {cpus_text(env.cpus)}"
    return info


def run_against_servers(
    args: argparse.Namespace,
    prefix: str,
    run: Callable[[list[ServerKind], argparse.Namespace, BenchEnv, ExitStack], Awaitable[T]],
) -> tuple[T, dict[str, str]]:
    """`run` on each server kind `args` asks for, in a work folder with its own Janus, ended
    by SIGTERM or Ctrl-C with everything cleaned up; its results and the run's info."""
    exit_on_sigterm()
    raise_nofile()
    kinds = server_kinds(args)  # fails early if the original is not there
    with ExitStack() as cleanup:  # runs on errors, Ctrl-C and SIGTERM too
        env = bench_env(cleanup, args.workdir, args.pin, prefix=prefix)
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            results = runner.run(cancelled_by_sigterm(run(kinds, args, env, cleanup)))
    return results, run_info(args, env)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results, info = run_against_servers(args, "cvh-fanout-", run_counts)
    print_report(results, info)
    if args.write_results:
        path = Path(__file__).resolve().parent / "RESULTS.md"
        write_results(path, results, info)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
