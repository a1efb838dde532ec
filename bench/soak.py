"""Soak test of the slot server: many receivers, senders coming and going, for minutes.

Not run in CI. One server (ours; with `--baseline` the original first, then ours, each its
own run), started like the original is deployed (`bench.servers`: legacy JSON in
CONFIG_PATH, the four slots activated on its stdin), `--receivers` light receivers
(`bench.receivers`: python-socketio's own client cannot take 30,000 events a second in one
process, see there), and for `--minutes`:

- four senders (python-socketio's client), one per slot, that come and go: connect,
  `sender_init`, join the Janus room as a publisher (no media), `set_feed_id`, stay a random
  few seconds, leave, pause, again;
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

    python -m bench.soak [--receivers 3000] [--minutes 10] [--baseline …/dist/server.js]
                         [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import secrets
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import rig, servers
from bench.clients import call_ok, janus_publisher, socketio_client
from bench.receivers import ClientError, ReceiverPool
from bench.results import publish, table

SECTION = "## Soak (slot server)"
SLOTS = 4  # the legacy configuration's cameraSlots: one sender each
KINDS = ("new_feed", "remove_feed", "command")
RSS_LIMIT_PCT = 5.0  # RSS growth after the first minute
DESCRIPTION = f"""\
`python -m bench.soak` (not in CI; its docstring says what is checked): receivers that
negotiate permessage-deflate like Chromium (the light client of `bench/receivers.py`:
python-socketio's own would need about seven cores for the 30,000 events a second here),
four senders (python-socketio's client) that come and go (`sender_init`, a Janus publisher,
`set_feed_id`, a random stay, leave), the controller on the server's stdin changing the
geometry of the slots whose feed is up 10 times a second (x counting up). Every receiver
must get every event caused, in order and in the same order as the others; the server's
RSS may grow less than {RSS_LIMIT_PCT:.0f} % after the first minute (reference: the sample at
one minute, or half of a shorter run). *→ last receiver*: from the bench causing the event
(writing the line, sending `set_feed_id`, starting to leave) to its arrival at the last
receiver.

Reading it: these latencies are not the fan-out's (one event at a time, section above).
With 10 commands a second to 3000 receivers the load generator takes 30,000 messages a
second in one Python process on the other core, and the times are taken there."""


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
        self._caused: list[int] | None = None  # set at the end: who has got it all
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
        if at > self.last_arrival.get((event, key), 0.0):
            self.last_arrival[(event, key)] = at
        if receiver == 0:
            for condition, future in self._waiters:
                if not future.done() and condition():
                    future.set_result(None)
        if self.counts[receiver] == self._caused:
            self._complete += 1
            if self._complete >= self.receivers:
                self._all_complete.set()

    def _check(self, receiver: int, event: str, slot: int, data: Any) -> int:
        """Count the event, note disorder; its key (the feed's number, or x for a command)."""
        self.counts[receiver][KINDS.index(event)] += 1  # ValueError: not an event we cause
        feeds = self.feeds[receiver]
        if event == "new_feed":
            key = self.feed_numbers[int(data["feedId"])]
            if feeds[slot] > 0 or key <= -feeds[slot]:
                self._problem(receiver, f"new_feed slot={slot} feed={key} after {feeds[slot]}")
            feeds[slot] = key
        elif event == "remove_feed":
            key = abs(feeds[slot])
            if feeds[slot] <= 0:
                self._problem(receiver, f"remove_feed slot={slot} with no feed up")
            feeds[slot] = -key
        else:
            key, last = int(data["params"][1]), self.last_x[receiver]
            if feeds[slot] <= 0 or key <= last:
                self._problem(receiver, f"command slot={slot} x={key} after {last}")
            self.last_x[receiver] = key
            if receiver == 0:
                self.watched_x[slot] = key
        return key

    def _problem(self, receiver: int, text: str) -> None:
        self.disorder[receiver] += 1
        if len(self.problems) < 10:
            self.problems.append(f"receiver {receiver}: {text}")

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        """Until `condition` holds (checked whenever the watcher gets an event)."""
        if condition():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        try:
            async with asyncio.timeout(rig.STEP_TIMEOUT):
                await future
        except TimeoutError:
            raise ClientError(f"watcher: {what}: not after {rig.STEP_TIMEOUT:.0f} s") from None
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    async def all_got(self, caused: list[int], timeout: float) -> None:
        """Until every receiver has got what was caused, or `timeout` (the figures say who
        is short)."""
        self._caused = caused
        self._complete = sum(1 for c in self.counts if c == caused)
        if self._complete < self.receivers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._all_complete.wait()


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


async def controller(server: servers.Server, ledger: Ledger, traffic: Traffic, hz: float) -> None:
    """One geometry line per tick, in turn for the slots whose sender is up, until cancelled."""
    loop = asyncio.get_running_loop()
    turn, tick = 0, loop.time()
    while True:
        if up := sorted(traffic.up):
            slot, turn, traffic.x = up[turn % len(up)], turn + 1, traffic.x + 1
            ledger.caused[("command", traffic.x)] = time.monotonic()
            line = f"set_geometry_relative_to_canvas {slot} rb {traffic.x} 10 320 240"
            server.process.send_line(line)
            traffic.last_x_sent[slot] = traffic.x
        tick += 1.0 / hz
        await asyncio.sleep(max(0.0, tick - loop.time()))  # pacing, not waiting for anything


async def sender_visit(
    server: servers.Server, slot: int, token: str, feed: dict[str, int], ledger: Ledger,
    traffic: Traffic, stay: float,
) -> None:  # fmt: skip
    """One sender's life on `slot`: up, stay, leave once the watcher saw the slot's commands."""
    async with socketio_client(server.url) as client:
        await call_ok(client, "sender_init", {"slot": slot, "token": token})
        number, traffic.next_feed = traffic.next_feed, traffic.next_feed + 1
        ledger.feed_numbers[feed["feedId"]] = number
        ledger.caused[("new_feed", number)] = time.monotonic()
        await call_ok(client, "set_feed_id", feed)
        traffic.new_feeds += 1
        traffic.up.add(slot)
        try:
            await asyncio.sleep(stay)  # the sender's stay: a pause by design
        finally:
            traffic.up.discard(slot)
        last = traffic.last_x_sent[slot]
        await ledger.until(lambda: ledger.watched_x[slot] >= last, f"x={last}")
        ledger.caused[("remove_feed", number)] = time.monotonic()
        await client.disconnect()
    await ledger.until(lambda: ledger.feeds[0][slot] <= 0, f"remove_feed {slot}")
    traffic.removes += 1


async def senders(
    server: servers.Server, slot: int, token: str, ledger: Ledger, traffic: Traffic,
    janus_url: str, args: argparse.Namespace,
) -> None:  # fmt: skip
    """Senders on `slot` one after the other until the deadline."""
    rng, loop = random.Random(f"{args.seed}-{slot}"), asyncio.get_running_loop()
    deadline = loop.time() + args.minutes * 60
    async with aiohttp.ClientSession() as http:
        while (left := deadline - loop.time()) > 0:
            stay = min(rng.uniform(args.stay_min, args.stay_max), left)
            async with janus_publisher(http, janus_url, server.room) as feed:
                await sender_visit(server, slot, token, feed, ledger, traffic, stay)
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # off the slot for a moment: by design


async def sample_rss(pid: int, every: float, samples: list[tuple[float, int]]) -> None:
    """The server's RSS every `every` seconds, from now on, until cancelled."""
    started = time.monotonic()
    while True:
        samples.append((time.monotonic() - started, rig.rss_kib(pid)))
        await asyncio.sleep(every)


@dataclass(frozen=True)
class SoakResult:
    """The figures of one server's soak."""

    server: str
    receivers: int
    seconds: float
    deflate: str
    caused: list[int]  # per kind, KINDS order
    ledger: Ledger
    rss: list[tuple[float, int]]  # (seconds since the receivers joined, KiB)
    rss_reference_s: float

    def losses(self) -> tuple[int, int, int]:
        """Receivers with exactly what was caused, events lost, events extra."""
        pairs = [
            (want, got)
            for c in self.ledger.counts
            for want, got in zip(self.caused, c, strict=True)
        ]
        complete = sum(1 for c in self.ledger.counts if c == self.caused)
        lost = sum(max(0, want - got) for want, got in pairs)
        return complete, lost, sum(max(0, got - want) for want, got in pairs)

    def differing(self) -> int:
        """Receivers whose sequence of events differs from the most common one."""
        common = statistics.mode(self.ledger.digests)
        return sum(1 for d in self.ledger.digests if d != common)

    def latency_ms(self, kind: str) -> str:
        """p50 / p99 / max over the events of `kind`: caused → the last receiver, ms."""
        ledger = self.ledger
        latencies = sorted(
            (ledger.last_arrival[key] - at) * 1000
            for key, at in ledger.caused.items()
            if key[0] == kind and key in ledger.last_arrival
        ) or [0.0]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return f"{statistics.median(latencies):.1f} / {p99:.1f} / {latencies[-1]:.1f}"

    def rss_mib(self, at: str) -> float:
        samples = {"first": self.rss[0], "last": self.rss[-1]}
        reference = next(s for s in self.rss if s[0] >= self.rss_reference_s)
        return samples.get(at, reference)[1] / 1024

    @property
    def rss_growth_pct(self) -> float:
        """Highest RSS after the reference sample against it, in %."""
        reference = self.rss_mib("reference") * 1024
        after = [kib for t, kib in self.rss if t > self.rss_reference_s] or [int(reference)]
        return (max(after) - reference) / reference * 100

    @property
    def passed(self) -> bool:
        complete, lost, extra = self.losses()
        clean = not (lost or extra or sum(self.ledger.disorder) or self.differing())
        return clean and complete == self.receivers and self.rss_growth_pct < RSS_LIMIT_PCT

    def rows(self) -> list[tuple[str, str]]:
        complete, lost, extra = self.losses()
        return [
            ("receivers", str(self.receivers)), ("minutes", f"{self.seconds / 60:.1f}"),
            ("permessage-deflate", self.deflate),
            *((f"{kind} caused", str(n)) for kind, n in zip(KINDS, self.caused, strict=True)),
            ("receivers with every event", f"{complete}/{self.receivers}"),
            ("lost (all receivers)", str(lost)), ("extra", str(extra)),
            ("out of order", str(sum(self.ledger.disorder))),
            ("order unlike the others (receivers)", str(self.differing())),
            *((f"{k} → last receiver p50 / p99 / max ms", self.latency_ms(k)) for k in KINDS),
            ("RSS after connecting MiB", f"{self.rss_mib('first'):.1f}"),
            ("RSS at the reference MiB (s)",
             f"{self.rss_mib('reference'):.1f} ({self.rss_reference_s:.0f})"),
            ("RSS at the end MiB", f"{self.rss_mib('last'):.1f}"),
            ("RSS growth after the reference", f"{self.rss_growth_pct:+.1f} %"),
            ("verdict", "PASS" if self.passed else "FAIL"),
        ]  # fmt: skip


async def soak_one(
    bench: rig.Rig, kind: servers.ServerKind, args: argparse.Namespace
) -> SoakResult:
    """The whole soak against one fresh server."""
    tokens = [secrets.token_hex(8) for _ in range(SLOTS)]
    server = await servers.start(bench, kind, tokens, label="-soak")
    ledger, traffic = Ledger(args.receivers), Traffic()
    samples: list[tuple[float, int]] = []
    pool = ReceiverPool(server.port, ledger)
    try:
        await pool.connect(args.receivers, args.connect_concurrency, args.connect_timeout)
        gc.freeze()  # the receivers: long-lived, never garbage
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:  # one failing cancels the others
            background = [
                group.create_task(sample_rss(server.process.pid, args.rss_every, samples)),
                group.create_task(controller(server, ledger, traffic, args.geometry_hz)),
            ]
            await asyncio.gather(*(
                group.create_task(senders(
                    server, slot, tokens[slot], ledger, traffic, bench.janus.http_url, args
                )) for slot in range(SLOTS)
            ))  # fmt: skip
            for task in background:
                task.cancel()
        seconds = time.monotonic() - started
        await ledger.all_got(traffic.caused(), rig.STEP_TIMEOUT * 2)
    except Exception:
        print(f"--- {kind.name} server log ---\n{server.process.log_tail()}", file=sys.stderr)
        raise
    finally:
        deflate = pool.deflate()
        pool.close()
        gc.unfreeze()
        await asyncio.to_thread(server.process.stop)
    reference = min(args.warm_minutes * 60, samples[-1][0] / 2)
    return SoakResult(
        kind.name, args.receivers, seconds, deflate, traffic.caused(), ledger, samples, reference
    )


async def run(bench: rig.Rig, args: argparse.Namespace) -> int:
    results = []
    for kind in servers.kinds(args):
        results.append(await soak_one(bench, kind, args))
        print(f"{kind.name}: {'PASS' if results[-1].passed else 'FAIL'}", flush=True)
    rows = [(name, *(dict(r.rows())[name] for r in results)) for name, _ in results[0].rows()]
    lines = table(("figure", *(r.server for r in results)), rows)
    problems = [f"- {r.server}: {text}" for r in results for text in r.ledger.problems]
    lines += ["", "Problems (the first few):", *problems] if problems else []
    publish(SECTION, DESCRIPTION, servers.run_info(bench, args), lines, args.write_results)
    return 0 if all(r.passed for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--receivers", type=int, default=3000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--geometry-hz", type=float, default=10.0, help="controller lines per s")
    parser.add_argument("--stay-min", type=float, default=2.0, help="a sender's stay, seconds")
    parser.add_argument("--stay-max", type=float, default=6.0)
    parser.add_argument("--rss-every", type=float, default=5.0, help="RSS sample period, s")
    parser.add_argument("--warm-minutes", type=float, default=1.0, help="RSS growth after it")
    parser.add_argument("--seed", type=int, default=1)
    servers.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.receivers < 1 or args.minutes <= 0 or args.geometry_hz <= 0:
        parser.error("--receivers, --minutes and --geometry-hz must be positive")
    if not 0 < args.stay_min <= args.stay_max:
        parser.error("need 0 < --stay-min <= --stay-max")
    return rig.run(
        lambda bench: run(bench, args), workdir=args.workdir, prefix="cvh-soak-", pin=args.pin
    )


if __name__ == "__main__":
    sys.exit(main())
