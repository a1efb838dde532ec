"""Soak test of the slot server: many receivers, senders coming and going, for minutes.

Not run in CI. One server (ours; with `--baseline` the original first, then ours, each its
own run), started like the original is deployed (legacy JSON in CONFIG_PATH, the four slots
activated on its stdin), `--receivers` lightweight websocket receivers (`eio_receivers.py`,
negotiating permessage-deflate as Chromium does), and for `--minutes`:

- four senders, one per slot, that come and go: connect, `sender_init`, join the Janus room
  as a publisher (no media), `set_feed_id`, stay a random few seconds, leave, pause, again;
- the controller (the server's stdin) sends `set_geometry_relative_to_canvas <slot> rb x …`
  `--geometry-hz` times a second, one line per tick, in turn for the slots whose feed is up,
  with x counting up by one across all slots.

Every event the bench causes is one the server must broadcast: a command is written only
while its slot's sender is up (after its `set_feed_id` ack), and a sender leaves only once
the first receiver (the watcher) has seen the last command written for its slot, so none can
be cut off by the sender's leaving; the next sender on a slot starts once the watcher has
seen the slot's `remove_feed`. Checked at every receiver:

- lost / extra: per kind (new_feed, remove_feed, command), what it got against what the bench
  caused;
- out of order: per slot new_feed and remove_feed alternate and feed ids grow; commands come
  only while the slot's feed is up and their x grows (across all slots: the server keeps
  the order of its stdin);
- same order as the others: a running CRC of every event it got, compared across receivers.

Also measured: caused → the last receiver's arrival, per event (p50, p99, max), and the
server's RSS every `--rss-every` seconds; growth after the first minute (the highest sample
after it against the sample at one minute) must stay under 5 %.

    python bench/soak.py [--receivers 3000] [--minutes 10] [--baseline …/dist/server.js]
                         [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import secrets
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from eio_receivers import ClientError, LightClient, ReceiverPool, call_ok, connect_client
from fanout import (
    HOST,
    SIO_PATH,
    STEP_TIMEOUT,
    janus_publisher,
    run_against_servers,
    start_server,
)
from fanout_report import (
    SOAK_KINDS,
    Checks,
    SoakResult,
    print_soak,
    write_soak_results,
)
from procs import (
    BenchEnv,
    ServerKind,
    ServerProcess,
    rss_kib,
)

SLOTS = 4  # the legacy configuration's cameraSlots: one sender each
KINDS = SOAK_KINDS


class Ledger:
    """What each receiver got, checked as it arrives; the watcher (receiver 0) paces senders."""

    def __init__(self, receivers: int) -> None:
        self.receivers = receivers
        self.counts = [[0, 0, 0] for _ in range(receivers)]  # per kind, KINDS order
        self.digests = [0] * receivers
        self.last_x = [0] * receivers
        self.feeds = [[0] * SLOTS for _ in range(receivers)]  # up: feed number; down: minus it
        self.disorder = [0] * receivers
        self.problems: list[str] = []  # the first few, as text
        self.caused: dict[tuple[str, int], float] = {}  # (kind, feed number or x) → when
        self.feed_numbers: dict[int, int] = {}  # Janus feed id → the bench's number, 1, 2, …
        self.last_arrival: dict[tuple[str, int], float] = {}
        self.watched_x = [0] * SLOTS  # the watcher's last command x per slot
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._target: list[int] | None = None
        self._complete = 0
        self._all_complete = asyncio.Event()

    def record(self, receiver: int, event: str, data: Any, at: float) -> None:
        try:
            slot = data["slot"]
            key = self._check(receiver, event, slot, data)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            self._problem(receiver, f"{event} {data!r}: {error!r}")
            return
        self.digests[receiver] = zlib.crc32(
            f"{event} {slot} {key}".encode(), self.digests[receiver]
        )
        caused = (event, key)
        if at > self.last_arrival.get(caused, 0.0):
            self.last_arrival[caused] = at
        if receiver == 0:
            self._wake_waiters()
        if self._target is not None and self.counts[receiver] == self._target:
            self._completed_one()

    def _check(self, receiver: int, event: str, slot: int, data: Any) -> int:
        """Count the event, note disorder; its key (the feed's number, or x for a command)."""
        kind = KINDS.index(event)  # ValueError: not an event the bench causes
        self.counts[receiver][kind] += 1
        feeds = self.feeds[receiver]
        if event == "new_feed":
            key = self.feed_numbers[int(data["feedId"])]
            if feeds[slot] > 0 or key <= -feeds[slot]:
                self._problem(receiver, f"new_feed slot={slot} feed={key} after {feeds[slot]}")
            feeds[slot] = key
        elif event == "remove_feed":
            key = feeds[slot]
            if key <= 0:
                self._problem(receiver, f"remove_feed slot={slot} with no feed up")
            feeds[slot] = -abs(key)
            key = abs(key)
        else:
            key = int(data["params"][1])
            if feeds[slot] <= 0 or key <= self.last_x[receiver]:
                self._problem(
                    receiver, f"command slot={slot} x={key} after {self.last_x[receiver]}"
                )
            self.last_x[receiver] = key
            if receiver == 0:
                self.watched_x[slot] = key
        return key

    def _problem(self, receiver: int, text: str) -> None:
        self.disorder[receiver] += 1
        if len(self.problems) < 10:
            self.problems.append(f"receiver {receiver}: {text}")

    def watcher_feed_up(self, slot: int) -> bool:
        return self.feeds[0][slot] > 0

    async def until(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Until `condition` holds (checked whenever the watcher gets an event)."""
        if condition():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise ClientError(f"watcher: {what}: not after {timeout:.0f} s") from None
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def _wake_waiters(self) -> None:
        for condition, future in self._waiters:
            if not future.done() and condition():
                future.set_result(None)

    async def all_complete(self, target: list[int], timeout: float) -> None:
        """Until every receiver has got exactly `target` events of each kind."""
        self._target = target
        self._complete = sum(1 for c in self.counts if c == target)
        if self._complete >= self.receivers:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._all_complete.wait()
        except TimeoutError:
            pass  # the figures say who is short

    def _completed_one(self) -> None:
        self._complete += 1
        if self._complete >= self.receivers:
            self._all_complete.set()


@dataclass
class Traffic:
    """What the bench caused, and the state of each slot's sender."""

    up: set[int] = field(default_factory=set)  # slots whose sender is up (commands allowed)
    last_x_sent: list[int] = field(default_factory=lambda: [0] * SLOTS)
    x: int = 0
    new_feeds: int = 0
    removes: int = 0
    next_feed: int = 1  # the next feed's number (Janus ids are random; these grow)

    def caused(self) -> list[int]:
        return [self.new_feeds, self.removes, self.x]


async def controller(
    server: ServerProcess, ledger: Ledger, traffic: Traffic, hz: float, stop: asyncio.Event
) -> None:
    """One geometry line per tick, in turn for the slots whose sender is up."""
    loop = asyncio.get_running_loop()
    period, turn, tick = 1.0 / hz, 0, loop.time()
    while not stop.is_set():
        up = sorted(traffic.up)
        if up:
            slot = up[turn % len(up)]
            turn += 1
            traffic.x += 1
            ledger.caused[("command", traffic.x)] = time.monotonic()
            server.send_line(f"set_geometry_relative_to_canvas {slot} rb {traffic.x} 10 320 240")
            traffic.last_x_sent[slot] = traffic.x
        tick += period
        await asyncio.sleep(max(0.0, tick - loop.time()))  # pacing, not waiting for anything


@dataclass(frozen=True)
class Target:
    """The server under test, as a sender sees it."""

    port: int
    room: int
    janus_url: str
    http: aiohttp.ClientSession


async def sender_cycle(
    target: Target, slot: int, token: str, ledger: Ledger, traffic: Traffic, stay: float
) -> None:
    """One sender's life on `slot`: a Janus publisher, reported, up, stays, leaves."""
    async with janus_publisher(target.http, target.janus_url, target.room) as feed:
        await sender_visit(target.port, slot, token, feed, ledger, traffic, stay)


async def sender_visit(
    port: int,
    slot: int,
    token: str,
    feed: dict[str, int],
    ledger: Ledger,
    traffic: Traffic,
    stay: float,
) -> None:
    """The socket.io part: up, stay, leave once the watcher has seen the slot's commands."""
    async with asyncio.timeout(STEP_TIMEOUT):
        client: LightClient = await connect_client(HOST, port, SIO_PATH, -1, None)
    try:
        await call_ok(client, "sender_init", {"slot": slot, "token": token}, STEP_TIMEOUT)
        feed_id, traffic.next_feed = traffic.next_feed, traffic.next_feed + 1
        ledger.feed_numbers[feed["feedId"]] = feed_id
        ledger.caused[("new_feed", feed_id)] = time.monotonic()
        await call_ok(client, "set_feed_id", feed, STEP_TIMEOUT)
        traffic.new_feeds += 1
        traffic.up.add(slot)
        await asyncio.sleep(stay)  # the sender's stay: a pause by design
        traffic.up.discard(slot)
        last = traffic.last_x_sent[slot]
        await ledger.until(lambda: ledger.watched_x[slot] >= last, f"x={last}", STEP_TIMEOUT)
        ledger.caused[("remove_feed", feed_id)] = time.monotonic()
        client.leave()
    finally:
        traffic.up.discard(slot)
        client.close()
    await ledger.until(
        lambda: not ledger.watcher_feed_up(slot), f"remove_feed {slot}", STEP_TIMEOUT
    )
    traffic.removes += 1


async def sender(
    target: Target,
    slot: int,
    token: str,
    ledger: Ledger,
    traffic: Traffic,
    args: argparse.Namespace,
) -> None:
    """Senders on `slot` one after the other until the deadline."""
    rng = random.Random(f"{args.seed}-{slot}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.minutes * 60
    while (left := deadline - loop.time()) > 0:
        stay = min(rng.uniform(args.stay_min, args.stay_max), left)
        await sender_cycle(target, slot, token, ledger, traffic, stay)
        await asyncio.sleep(rng.uniform(0.2, 1.0))  # off the slot for a moment: by design


async def sample_rss(pid: int, every: float, samples: list[tuple[float, int]]) -> None:
    """The server's RSS every `every` seconds, from now on, until cancelled."""
    started = time.monotonic()
    while True:
        samples.append((time.monotonic() - started, rss_kib(pid)))
        await asyncio.sleep(every)


def judge(ledger: Ledger, traffic: Traffic) -> Checks:
    """Every receiver against what was caused and against the others."""
    caused = traffic.caused()
    pairs = [(want, got) for c in ledger.counts for want, got in zip(caused, c, strict=True)]
    common = statistics.mode(ledger.digests)
    return Checks(
        caused=caused,
        complete=sum(1 for c in ledger.counts if c == caused),
        lost=sum(max(0, want - got) for want, got in pairs),
        extra=sum(max(0, got - want) for want, got in pairs),
        disorder=sum(ledger.disorder),
        differing=sum(1 for d in ledger.digests if d != common),
        problems=list(ledger.problems),
        latency_ms={kind: _latency(ledger, kind) for kind in KINDS},
    )


def _latency(ledger: Ledger, kind: str) -> tuple[float, float, float]:
    """p50, p99 and max over the events of `kind`: caused → the last receiver's arrival, ms."""
    latencies = sorted(
        (ledger.last_arrival[key] - at) * 1000
        for key, at in ledger.caused.items()
        if key[0] == kind and key in ledger.last_arrival
    ) or [0.0]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies), p99, latencies[-1]


async def soak_one(
    kind: ServerKind, args: argparse.Namespace, env: BenchEnv, cleanup: ExitStack
) -> SoakResult:
    """The whole soak against one fresh server."""
    tokens = [secrets.token_hex(8) for _ in range(SLOTS)]
    server, port, room = await start_server(kind, "soak", tokens, env, cleanup)
    ledger, traffic = Ledger(args.receivers), Traffic()
    pool = ReceiverPool(HOST, port, SIO_PATH, ledger)
    samples: list[tuple[float, int]] = []
    try:
        await pool.connect(args.receivers, args.connect_concurrency, args.connect_timeout)
        gc.freeze()  # the receivers: long-lived, never garbage
        started = time.monotonic()
        stop = asyncio.Event()
        async with aiohttp.ClientSession() as http, asyncio.TaskGroup() as group:
            target = Target(port, room, env.janus_url, http)
            rss_task = group.create_task(sample_rss(server.pid, args.rss_every, samples))
            group.create_task(controller(server, ledger, traffic, args.geometry_hz, stop))
            senders = [
                group.create_task(sender(target, slot, tokens[slot], ledger, traffic, args))
                for slot in range(SLOTS)
            ]
            await asyncio.gather(*senders)
            stop.set()
            await ledger.all_complete(traffic.caused(), STEP_TIMEOUT * 2)
            rss_task.cancel()
        seconds = time.monotonic() - started
    except Exception:
        print(f"--- {kind.name} server log ---\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        deflate = pool.deflate()
        pool.close()
        gc.unfreeze()
        await asyncio.to_thread(server.stop)
    reference = min(args.warm_minutes * 60, samples[-1][0] / 2)
    return SoakResult(
        kind.name, args.receivers, seconds, deflate, judge(ledger, traffic), samples, reference
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receivers", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--baseline", type=Path, metavar="PATH", help="the original's dist/server.js"
    )
    parser.add_argument("--geometry-hz", type=float, default=10.0, help="controller lines per s")
    parser.add_argument("--stay-min", type=float, default=2.0, help="a sender's stay, seconds")
    parser.add_argument("--stay-max", type=float, default=6.0)
    parser.add_argument("--rss-every", type=float, default=5.0, help="RSS sample period, s")
    parser.add_argument(
        "--warm-minutes", type=float, default=1.0, help="RSS growth counts after this"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--uvloop", action=argparse.BooleanOptionalAction, default=True, help="our server's loop"
    )
    parser.add_argument(
        "--server-gc-threshold", default="", metavar="T0,T1,T2", help="our server's gc threshold"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each server on the last CPU, load generator and Janus on the others",
    )
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--workdir", type=Path, help="keep configs and logs here")
    parser.add_argument(
        "--write-results", action="store_true", help="rewrite the Soak section of RESULTS.md"
    )
    args = parser.parse_args(argv)
    if args.receivers < 1 or args.minutes <= 0 or args.geometry_hz <= 0:
        parser.error("--receivers, --minutes and --geometry-hz must be positive")
    if not 0 < args.stay_min <= args.stay_max:
        parser.error("need 0 < --stay-min <= --stay-max")
    return args


async def run(
    kinds: list[ServerKind], args: argparse.Namespace, env: BenchEnv, cleanup: ExitStack
) -> list[SoakResult]:
    results = []
    for kind in kinds:
        result = await soak_one(kind, args, env, cleanup)
        verdict = "PASS" if result.passed else "FAIL"
        print(f"{kind.name}: {verdict}", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results, info = run_against_servers(args, "cvh-soak-", run)
    print_soak(results, info)
    if args.write_results:
        path = Path(__file__).resolve().parent / "RESULTS.md"
        write_soak_results(path, results, info)
        print(f"wrote {path}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
