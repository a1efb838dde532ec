"""Fan-out of the slot server: how fast N receivers learn of a feed coming and going.

For each N: a fresh server (its own process, `bench/serve.py`) on a local Janus, N
lightweight websocket receivers (`eio_receivers.py`), then rounds of a sender (the same
lightweight client, so that its ack is timestamped on arrival like the receivers' events)
doing `sender_init` + `set_feed_id` and leaving. Measured:

- connect: wall time until all N receivers have joined the default namespace;
- new_feed: from the sender's `set_feed_id` ack to the last receiver's `new_feed`, and
  from sending `set_feed_id` (the server sends its ack after queueing the broadcast);
- remove_feed: from the sender starting to disconnect to the last receiver's `remove_feed`;
- the server's RSS before and after connecting N.

Every time is CLOCK_MONOTONIC (`time.monotonic()`), shared by all processes. Each figure is
per round; the table gives the median and the maximum over the rounds (after one warm-up
round, which is shown but not counted).

    python bench/fanout.py [--counts 100,1000,3000] [--rounds 5] [--uvloop/--no-uvloop]
                           [--server-gc-threshold T0,T1,T2] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eio_receivers import Arrivals, LightClient, ReceiverPool, connect_client
from fanout_report import CountResult, Round, print_report, write_results
from procs import ServerProcess, machine, raise_nofile, rss_kib, split_cpus

from cvh_camera.janus_local import find_free_port, make_local_janus

HOST = "127.0.0.1"
SIO_PATH = "/socket.io"
STEP_TIMEOUT = 15.0  # one round trip, one fan-out, the server coming up
ROUND_GAP = 0.2  # seconds between rounds: let the server finish closing the sender


@dataclass(frozen=True)
class BenchEnv:
    workdir: Path
    janus_url: str
    admin_key: str
    cpus: set[int] | None  # the server's CPUs, None = not pinned


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


async def _call(sender: LightClient, event: str, data: Any) -> float:
    """Emit with an ack; the ack's arrival time. A refusal is an error."""
    async with asyncio.timeout(STEP_TIMEOUT):
        reply, at = await sender.emit(event, data)
    if not isinstance(reply, dict) or reply.get("success") is not True:
        raise RuntimeError(f"{event} refused: {reply!r}")
    return at


async def one_round(
    port: int, token: str, arrivals: Arrivals, count: int, feed_id: int, since: float
) -> Round:
    async with asyncio.timeout(STEP_TIMEOUT):
        sender = await connect_client(HOST, port, SIO_PATH, -1, arrivals=None)
    try:
        await _call(sender, "sender_init", {"slot": 0, "token": token})
        arrivals.expect("new_feed", count)
        feed = {"feedId": feed_id, "sessionId": 1000 + feed_id, "videoroomId": 2000 + feed_id}
        sent = time.monotonic()
        acked = await _call(sender, "set_feed_id", feed)
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


def write_server_config(path: Path, port: int, janus_url: str, admin_key: str, token: str) -> None:
    config = {  # JSON is YAML
        "listen": {"host": HOST, "port": port},
        "socketio": {"path": SIO_PATH},
        "slots": {"count": 4, "preactivated": [{"slot": 0, "token": token}]},
        "controller": {"stdin": False},
        "janus": {"url": janus_url, "admin_key": admin_key},
        "log": {"level": "info"},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


async def measure_count(
    count: int, args: argparse.Namespace, env: BenchEnv, cleanup: contextlib.ExitStack
) -> CountResult:
    port, token = find_free_port(), secrets.token_hex(8)
    url = f"http://{HOST}:{port}"
    config_path = env.workdir / f"server-{count}.yaml"
    write_server_config(config_path, port, env.janus_url, env.admin_key, token)
    server = ServerProcess(
        config_path,
        env.workdir / f"server-{count}.log",
        args.uvloop,
        env.cpus,
        args.server_gc_threshold,
    )
    cleanup.callback(server.stop)
    server.start()
    arrivals = Arrivals()
    pool = ReceiverPool(HOST, port, SIO_PATH, arrivals)
    try:
        await server.wait_ready(url, STEP_TIMEOUT)
        await asyncio.sleep(args.settle)
        rss_before = rss_kib(server.pid)
        started = time.monotonic()
        await pool.connect(count, args.connect_concurrency, timeout=args.connect_timeout)
        connect_s = time.monotonic() - started
        await asyncio.sleep(args.settle)
        rss_after = rss_kib(server.pid)
        connected = time.monotonic()
        log_offset = server.log_size()
        rounds = []
        with _gc_paused():
            for number in range(args.warmup + args.rounds):
                rounds.append(
                    await one_round(port, token, arrivals, count, number + 1, since=connected)
                )
                await asyncio.sleep(ROUND_GAP)
        full_gcs = server.full_gcs_since(log_offset)
    except Exception:
        print(f"--- server log (N={count}) ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        pool.close()
        await asyncio.to_thread(server.stop)
    return CountResult(
        count,
        connect_s,
        rss_before,
        rss_after,
        tuple(rounds[: args.warmup]),
        tuple(rounds[args.warmup :]),
        full_gcs,
    )


async def run_counts(
    args: argparse.Namespace, env: BenchEnv, cleanup: contextlib.ExitStack
) -> list[CountResult]:
    results = []
    async with asyncio.timeout(args.time_limit):
        for count in args.counts:
            result = await measure_count(count, args, env, cleanup)
            new_median, new_max = result.stat(lambda r: r.new_feed_last)
            print(
                f"N={count}: connect {result.connect_s:.2f} s, "
                f"new_feed median {new_median:.1f} ms max {new_max:.1f} ms",
                flush=True,
            )
            results.append(result)
    return results


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


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
        help="server on the last CPU, load generator and Janus on the others",
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
    parser.add_argument("--time-limit", type=float, default=900.0, help="whole run, seconds")
    parser.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument(
        "--workdir", type=Path, help="keep configs and logs here (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup at least 0")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup below


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    raise_nofile()
    split = split_cpus() if args.pin else None
    if split is not None:
        os.sched_setaffinity(0, split[0])  # Janus, started below, inherits it
    loop_factory = _loop_factory()
    with contextlib.ExitStack() as cleanup:  # runs on errors, Ctrl-C and SIGTERM too
        if args.workdir is not None:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="cvh-fanout-")))
        janus = make_local_janus(workdir / "janus")
        cleanup.callback(janus.stop)
        janus.start()
        env = BenchEnv(workdir, janus.http_url, janus.admin_key, split[1] if split else None)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(run_counts(args, env, cleanup))
    info = machine()
    info["load generator"] = f"{loop_factory.__module__} loop, CPUs {_cpus(split, 0)}"
    variant = server = "uvloop" if args.uvloop else "asyncio"
    server += " loop"
    if args.server_gc_threshold:
        variant += f", gc threshold {args.server_gc_threshold}"
        server += f", gc.set_threshold({args.server_gc_threshold})"
    info["server"] = f"{server}, CPUs {_cpus(split, 1)}"
    print_report(results, info)
    if args.write_results:
        path = Path(__file__).resolve().parent / "RESULTS.md"
        write_results(path, results, info, variant)
        print(f"wrote {path}")
    return 0


def _cpus(split: tuple[set[int], set[int]] | None, which: int) -> str:
    if split is None:
        return "not pinned"
    return ",".join(str(cpu) for cpu in sorted(split[which]))


if __name__ == "__main__":
    sys.exit(main())
