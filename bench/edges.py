"""Edges: what one subscriber stream costs the origin Janus and an edge Janus, what feeding
an edge costs the origin, and the latency one cascade hop (origin → edge) adds.

How it is measured: DESCRIPTION below (it heads the section in bench/RESULTS.md, and --help).

    python -m bench.edges [--subscribers 16] [--window 30] [--hop-seconds 25] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc import rtcrtpreceiver as aiortc_receiver
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket
from av.frame import Frame

from bench import rig, servers
from bench.results import machine_info, publish, table
from cvh_camera.appliance.sources.synthetic import record_test_stream
from cvh_camera.janus import JanusSession
from cvh_camera.janus_local import LocalJanus, find_free_port, make_local_janus

SECTION = "## Edges: Janus CPU per subscriber, cascade hop latency"
WIDTH, HEIGHT, FPS, BITRATE, KEYFRAME_INTERVAL = 1280, 720, 30, 2_000_000, 60
ROOM_BITRATE = 3_000_000  # above the camera's: REMB never asks the appliance for less
WARMUP = 3.0  # seconds between the subscribers receiving and a window's start
MATCH_WINDOW = 1.0  # s; the recording loops every 10 s, so equal payloads come back
DESCRIPTION = """\
`python -m bench.edges` runs the appliance on a 10 s recording of the test stream
(`camera.source: file`, 1280×720, 30 fps, 2 Mbit/s, an IDR every 60 frames: the publisher
costs almost nothing) into a local Janus, the origin, and our slot server as a user runs it
(`python -m bench.serve --config FILE.yaml`, slot 0 preactivated, room bitrate 3 Mbit/s),
twice: with `janus.edges: []` (*origin alone*), then with two more local Janus as
`janus.edges` (*2 edges*: the server adds the feed on each edge as a remote publisher, the
origin forwards its RTP there). Once /healthz shows the feed on every Janus: each Janus's
CPU time (utime + stime, all threads, `/proc/<pid>/stat`, 10 ms ticks) over a window with
no subscriber, then over one with N subscribers, on the origin alone or split evenly over
the two edges; windows start 3 s after the last subscriber's first packet.

The subscribers are aiortc peer connections in the benchmark process (`join` as
subscriber, answer, `start`): real ICE, DTLS and SRTP, but aiortc's decoder is replaced by
one that drops every frame, in this process only: the figure is Janus's cost, and decoding
N 720p streams would take the two cores from Janus. Each counts the RTP packets it is
handed (after SRTP): *packets/s per subscriber*. *load generator*: this process's CPU.

- *per subscriber stream*: (CPU with N − CPU with 0) / N; on an edge: both edges' growth
  summed, over N. *per edge on the origin*: (origin with 2 edges − origin alone) / 2, both
  with no subscriber. Units: % of one core (ms of CPU per second).
- *hop latency*: one subscriber on the origin and one on edge 0; for each RTP payload
  (Janus forwards payloads unchanged; matched by a hash, within 1 s) the time it came off
  the edge subscriber's socket minus the origin subscriber's (time.monotonic, stamped when
  aioice takes the datagram, one event loop for both). The origin sends a forward from the
  publisher's thread, a subscriber's stream from that subscriber's thread (as the edge
  does): so this is the hop (loopback UDP, the edge's receive path) plus the scheduling of
  those threads on either side, hence the negative values."""


class _DropFrames(Decoder):
    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        return []


def skip_decoding() -> None:
    """For this process: aiortc's receivers decode nothing. Their decoder thread calls the
    `get_decoder` that aiortc.rtcrtpreceiver imported; the figures are Janus's cost, and the
    load generator must not decode N 720p streams on the two cores Janus runs on."""
    aiortc_receiver.get_decoder = lambda codec: _DropFrames()  # type: ignore[attr-defined]


class Subscriber:
    """A VideoRoom subscriber over aiortc that counts the RTP packets it receives and hands
    their payloads, with when they came, to `on_payload`; `close()` is idempotent."""

    def __init__(
        self, http: aiohttp.ClientSession, janus_url: str, room: int,
        on_payload: Callable[[bytes, float], None] | None = None,
    ) -> None:  # fmt: skip
        self._http, self._url, self._room, self._on_payload = http, janus_url, room, on_payload
        self._session: JanusSession | None = None
        self._pc: RTCPeerConnection | None = None
        self._arrival = 0.0  # when the datagram being handled came off the socket
        self.packets = 0
        self.receiving = asyncio.Event()  # the first packet came

    async def subscribe(self, feed_id: int) -> None:
        self._session = session = await JanusSession.create(
            self._http, self._url, request_timeout=rig.STEP_TIMEOUT
        )
        handle = await session.attach("janus.plugin.videoroom")
        join = {"request": "join", "ptype": "subscriber", "room": self._room,
                "streams": [{"feed": feed_id}]}  # fmt: skip
        _, offer = await handle.message(join, timeout=rig.STEP_TIMEOUT)  # answered by an event
        if offer is None:
            raise rig.BenchError(f"{self._url}: subscriber joined without an SDP offer")
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        for transceiver in pc.getTransceivers():
            self._count(transceiver.receiver)
            if self._on_payload is not None:
                self._stamp(transceiver.receiver)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": "answer", "sdp": pc.localDescription.sdp}
        await handle.message({"request": "start"}, answer, timeout=rig.STEP_TIMEOUT)

    def _count(self, receiver: RTCRtpReceiver) -> None:
        """aiortc has no hook per RTP packet: wrap this one receiver's handler."""
        handle = receiver._handle_rtp_packet

        async def counted(packet: RtpPacket, arrival_time_ms: int) -> None:
            self.packets += 1
            self.receiving.set()
            if self._on_payload is not None and packet.payload:
                self._on_payload(packet.payload, self._arrival)
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counted  # type: ignore[method-assign]

    def _stamp(self, receiver: RTCRtpReceiver) -> None:
        """When each datagram came off the socket (its RTP handler runs only after those of
        the datagrams queued before it): aioice queues them, the DTLS transport takes them in
        order, one at a time, so a FIFO carries each one's time to its handler."""
        ice = receiver.transport.transport
        connection, recv = ice._connection, ice._recv
        received, stamps = connection.data_received, collections.deque[float]()

        def stamped(data: bytes, component: int) -> None:
            stamps.append(time.monotonic())
            received(data, component)

        async def carried() -> bytes:
            data = await recv()
            self._arrival = stamps.popleft()
            return data

        connection.data_received = stamped  # type: ignore[method-assign]
        ice._recv = carried

    async def close(self) -> None:
        pc, session, self._pc, self._session = self._pc, self._session, None, None
        if pc is not None:
            await pc.close()
        if session is not None:
            await session.destroy()  # its poll and keepalive tasks with it


class HopClock:
    """Each payload's arrival on the edge minus its arrival on the origin."""

    def __init__(self) -> None:
        self._waiting: tuple[dict[int, float], dict[int, float]] = ({}, {})  # origin, edge
        self.seen = [0, 0]
        self.latencies: list[float] = []  # seconds

    def arrived(self, side: int, payload: bytes, now: float) -> None:
        """`payload` came off the socket at `now` on the origin (side 0) or the edge (1)."""
        self.seen[side] += 1
        then = self._waiting[1 - side].pop(hash(payload), None)
        if then is not None and abs(now - then) < MATCH_WINDOW:
            self.latencies.append(now - then if side else then - now)
        else:
            self._waiting[side][hash(payload)] = now


@dataclass(frozen=True)
class Window:
    cpu: dict[str, float]  # CPU-s per s of each Janus ("origin", "edge 0", …)
    load_generator: float  # this process's CPU-s per s
    packets_per_s: tuple[float, ...]  # each subscriber's


def _pid(janus: LocalJanus) -> int:
    if janus.pid is None:
        raise rig.BenchError(f"the Janus in {janus.workdir} is down\n{janus.log_tail()}")
    return janus.pid


async def measure(januses: dict[str, LocalJanus], subs: Sequence[Subscriber], s: float) -> Window:
    await asyncio.sleep(WARMUP)
    pids = {name: _pid(janus) for name, janus in januses.items()}
    cpu = {name: rig.cpu_seconds(pid) for name, pid in pids.items()}
    start, own, packets = time.monotonic(), time.process_time(), [sub.packets for sub in subs]
    await asyncio.sleep(s)
    took = time.monotonic() - start
    return Window(
        {name: (rig.cpu_seconds(pid) - cpu[name]) / took for name, pid in pids.items()},
        (time.process_time() - own) / took,
        tuple((sub.packets - before) / took for sub, before in zip(subs, packets, strict=True)),
    )


@contextlib.asynccontextmanager
async def subscribed(subs: Sequence[Subscriber], feed_id: int) -> AsyncIterator[None]:
    """Every subscriber subscribed and receiving; all closed at the end."""
    try:
        async with asyncio.timeout(rig.STEP_TIMEOUT + 2.0 * len(subs)):
            for sub in subs:
                await sub.subscribe(feed_id)
            for sub in subs:
                await sub.receiving.wait()
        yield
    except TimeoutError:
        got = [sub.packets for sub in subs]
        raise rig.BenchError(f"subscribers not all receiving in time: packets {got}") from None
    finally:
        for sub in subs:
            await sub.close()


async def healthz(
    http: aiohttp.ClientSession, server: servers.Server, what: str,
    ok: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:  # fmt: skip
    """/healthz once `ok` holds (the server offers no event for it: polled)."""
    try:
        async with asyncio.timeout(rig.STEP_TIMEOUT):
            while True:
                if not server.process.alive():
                    raise rig.BenchError(f"the server exited\n{server.process.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{server.url}/healthz") as reply:
                        health: dict[str, Any] = await reply.json()
                    if ok(health):
                        return health
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise rig.BenchError(f"no {what} in /healthz\n{server.process.log_tail()}") from None


def _ready(health: dict[str, Any]) -> bool:
    return all(janus["state"] == "ready" for janus in [health["janus"], *health["edges"]])


def _carried(health: dict[str, Any]) -> bool:
    feed = health["feeds"].get("0")
    return isinstance(feed, int) and all(feed in edge["feeds"] for edge in health["edges"])


async def phase(
    bench: rig.Rig, http: aiohttp.ClientSession, args: argparse.Namespace,
    camera: dict[str, Any], edges: Sequence[LocalJanus], name: str,
) -> tuple[Window, Window, HopClock | None]:  # fmt: skip
    """Our server and the appliance; windows with 0 and N subscribers; the hop latency."""
    token, port, room = secrets.token_hex(8), find_free_port(), next(bench.rooms)
    config = {
        "listen": {"host": rig.HOST, "port": port},
        "slots": {"preactivated": [{"slot": 0, "token": token}]},
        "controller": {"stdin": False, "notify_path": ""},
        "janus": {"url": bench.janus.http_url, "room": room, "admin_key": bench.janus.admin_key,
                  "bitrate": ROOM_BITRATE,
                  "edges": [{"url": e.http_url, "admin_key": e.admin_key} for e in edges]},
    }  # fmt: skip
    path = bench.workdir / f"server-{name}.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    argv = (sys.executable, "-m", "bench.serve", "--config", str(path))
    kind = servers.ServerKind("ours", argv, "janus room ready", "slot activated", False)
    server = servers.Server(kind, bench.child(argv, f"server-{name}").start(), port, room)
    await healthz(http, server, "room ready on every Janus", _ready)
    appliance = bench.appliance(server, token, camera, f"appliance-{name}")
    feed_id = int((await healthz(http, server, "feed on every Janus", _carried))["feeds"]["0"])
    januses = {"origin": bench.janus, **{f"edge {i}": e for i, e in enumerate(edges)}}
    print(f"{name}: feed {feed_id}; 0 subscribers …", flush=True)
    idle = await measure(januses, [], args.window)
    urls = [e.http_url for e in edges] or [bench.janus.http_url]
    subs = [Subscriber(http, urls[i % len(urls)], room) for i in range(args.subscribers)]
    print(f"{name}: {len(subs)} subscribers …", flush=True)
    async with subscribed(subs, feed_id):
        loaded = await measure(januses, subs, args.window)
    hop = None
    if edges:
        print(f"{name}: hop latency for {args.hop_seconds:g} s …", flush=True)
        hop = HopClock()
        pair = [Subscriber(http, janus.http_url, room, functools.partial(hop.arrived, side))
                for side, janus in enumerate((bench.janus, edges[0]))]  # fmt: skip
        async with subscribed(pair, feed_id):
            await asyncio.sleep(args.hop_seconds)
    for process in (appliance, server.process):
        await asyncio.to_thread(process.stop)
    return idle, loaded, hop


def _cpu(value: float) -> str:
    return f"{value * 100:.2f} % ({value * 1000:.1f} ms/s)"


def figures(alone: tuple[Window, Window], cascade: tuple[Window, Window], n: int,
            hop: HopClock) -> list[str]:  # fmt: skip
    header = ("window", "origin", "edge 0", "edge 1", "packets/s per subscriber (min–max)",
              "load generator")  # fmt: skip
    rows = []
    labels = ("origin alone, 0 subscribers", f"origin alone, {n} on the origin",
              "2 edges, 0 subscribers", f"2 edges, {n} split over the edges")  # fmt: skip
    for label, w in zip(labels, (*alone, *cascade), strict=True):
        rate = f"{min(w.packets_per_s):.0f}–{max(w.packets_per_s):.0f}" if w.packets_per_s else "—"
        cells = [_cpu(w.cpu[k]) if k in w.cpu else "—" for k in ("origin", "edge 0", "edge 1")]
        rows.append((label, *cells, rate, _cpu(w.load_generator)))
    (idle, loaded), (idle2, loaded2) = alone, cascade
    on_origin = (loaded.cpu["origin"] - idle.cpu["origin"]) / n
    on_edge = sum(loaded2.cpu[k] - idle2.cpu[k] for k in ("edge 0", "edge 1")) / n
    lines = [
        f"origin, 0 subscribers (ingest only): {_cpu(idle.cpu['origin'])}",
        f"origin feeding 2 edges, 0 subscribers: {_cpu(idle2.cpu['origin'])}; per edge: "
        + _cpu((idle2.cpu["origin"] - idle.cpu["origin"]) / 2),
        f"per subscriber stream on the origin alone: {_cpu(on_origin)}",
        f"per subscriber stream on an edge: {_cpu(on_edge)}",
        f"ratio edge / origin per subscriber stream: {on_edge / max(on_origin, 1e-9):.2f}",
        f"origin while the {n} subscribers are on the edges: "
        f"{(loaded2.cpu['origin'] - idle2.cpu['origin']) * 1000:+.1f} ms/s against none",
    ]
    ms = sorted(v * 1000 for v in hop.latencies)
    if len(ms) < 100:
        raise rig.BenchError(f"hop latency: only {len(ms)} packets matched")
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    lines.append(
        f"hop latency (edge − origin): p50 {cuts[49]:.2f} ms, p99 {cuts[98]:.2f} ms, max "
        f"{ms[-1]:.2f} ms (min {ms[0]:.2f} ms, p1 {cuts[0]:.2f} ms); {len(ms)} packets matched "
        f"of {hop.seen[0]} on the origin and {hop.seen[1]} on the edge"
    )
    return [*table(header, rows), "", *(f"- {line}" for line in lines)]


async def run(bench: rig.Rig, args: argparse.Namespace) -> int:
    skip_decoding()
    recording = bench.workdir / "test-720p30-2M.h264"
    await asyncio.to_thread(
        record_test_stream, recording, width=WIDTH, height=HEIGHT, fps=FPS, seconds=10.0,
        bitrate=BITRATE, keyframe_interval=KEYFRAME_INTERVAL,
    )  # fmt: skip
    camera = {"source": "file", "file": str(recording), "width": WIDTH, "height": HEIGHT,
              "fps": FPS, "bitrate": BITRATE, "keyframe_interval": KEYFRAME_INTERVAL}  # fmt: skip
    edges = [make_local_janus(bench.workdir / f"edge{i}", admin_key=f"edge-{i}") for i in (0, 1)]
    for edge in edges:
        bench.cleanup.callback(edge.stop)
        edge.start()  # on this thread, which outlives them (Janus dies with its starter)
    async with asyncio.timeout(args.time_limit), aiohttp.ClientSession() as http:
        idle, loaded, _ = await phase(bench, http, args, camera, [], "origin-alone")
        idle2, loaded2, hop = await phase(bench, http, args, camera, edges, "two-edges")
    if hop is None:  # never: the phase with edges measures it
        raise rig.BenchError("no hop latency measured")
    info = machine_info(bench.load_before)
    info["load average after the run"] = f"{os.getloadavg()[0]:.2f} (1 min)"
    info["windows"] = (
        f"{args.window:g} s each, {WARMUP:g} s after subscribing; N = {args.subscribers}"
    )
    info["load generator"] = "this process (the aiortc subscribers, no decoding), not pinned"
    lines = figures((idle, loaded), (idle2, loaded2), args.subscribers, hop)
    publish(SECTION, DESCRIPTION, info, lines, args.write_results)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=16, help="N (split over 2 edges)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per CPU window")
    parser.add_argument("--hop-seconds", type=float, default=25.0, help="hop latency, seconds")
    parser.add_argument("--time-limit", type=float, default=600.0, help="whole run, seconds")
    rig.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.subscribers < 2 or args.window <= 0 or args.hop_seconds <= 0:
        parser.error("--subscribers must be at least 2, --window and --hop-seconds positive")
    return rig.run(lambda bench: run(bench, args), workdir=args.workdir, prefix="cvh-edges-")


if __name__ == "__main__":
    sys.exit(main())
