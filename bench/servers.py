"""The slot servers under test, ours and the original Node.js one, started by the rig the
way the original is deployed: its legacy JSON named by CONFIG_PATH, slots activated by
`activate_slot` on standard input (kept open), log on standard output."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.results import machine_info
from bench.rig import HOST, STEP_TIMEOUT, BenchError, Child, Rig, cpus_text
from bench.rig import add_arguments as add_rig_arguments
from cvh_camera.janus_local import find_free_port


@dataclass(frozen=True)
class ServerKind:
    """How to run one slot server under test, and the log lines that tell its progress."""

    name: str  # "ours" or "original"
    argv: tuple[str, ...]
    ready_marker: str  # the Janus room exists and socket.io is served
    activated_marker: str  # `.format(slot=…)`: the controller's activate_slot was applied
    logs_gc: bool  # logs its full garbage collections (ours, through serve.py --log-gc)


def ours(uvloop: bool = True, gc_threshold: str = "") -> ServerKind:
    """Our slot server through `bench.serve` (uvloop or not, a GC threshold or its own)."""
    argv = [sys.executable, "-m", "bench.serve", "--log-gc"]
    argv += ["--uvloop" if uvloop else "--no-uvloop"]
    argv += ["--gc-threshold", gc_threshold] if gc_threshold else []
    # aiohttp is listening before the room's first Janus round trip ends.
    return ServerKind(
        "ours", tuple(argv), "janus room ready room=", "slot activated slot={slot} ", True
    )


def original(server_js: Path) -> ServerKind:
    """The original Node.js server; it listens at start, before it sets up the Janus room."""
    node = shutil.which("node")
    if node is None:
        raise BenchError("node not found: the original server needs Node.js")
    if not server_js.is_file():
        raise BenchError(f"no built original server at {server_js}")
    return ServerKind(
        "original",
        (node, str(server_js.resolve())),
        "Created new janus room",
        "Got command from stdin: activate_slot {slot} ",
        False,
    )


def describe_original(server_js: Path) -> str:
    """Node's version, the original's socket.io version and where it is, for a report."""
    node = subprocess.run(
        [shutil.which("node") or "node", "--version"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    package = server_js.resolve().parent.parent / "node_modules" / "socket.io" / "package.json"
    try:
        socketio = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        socketio = "unknown"
    return f"node {node or '?'}, socket.io {socketio}, {server_js}"


@dataclass(frozen=True)
class Server:
    """A slot server under test, running."""

    kind: ServerKind
    process: Child
    port: int
    room: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def activate(self, slot: int, token: str) -> None:
        """`activate_slot <slot> <token>` on its stdin, until it has applied it."""
        applied = self.process.expect(self.kind.activated_marker.format(slot=slot))
        self.process.send_line(f"activate_slot {slot} {token}")
        await self.process.wait(applied, f"activate slot {slot}", STEP_TIMEOUT)

    def full_gcs_since(self, offset: int) -> tuple[float, ...] | None:
        """Durations (ms) of the full collections it logged after byte `offset` of its log
        (None: this kind does not log them)."""
        if not self.kind.logs_gc:
            return None
        lines = self.process.log_text(offset).splitlines()
        marker = "gc generation=2 took_ms="
        return tuple(float(line.split(marker, 1)[1].split()[0]) for line in lines if marker in line)


async def start(
    rig: Rig, kind: ServerKind, tokens: Sequence[str], *, bitrate: int = 128_000, label: str = ""
) -> Server:
    """A fresh server on its own port and Janus room (`bitrate`: the room's), ready, slot i
    activated with `tokens[i]`; stopped at the end of the run."""
    port, room, name = find_free_port(), next(rig.rooms), f"{kind.name}{label}"
    config = {
        "port": port,
        "cameraSlots": 4,
        "notifyPath": "",
        "janusURL": rig.janus.http_url,
        "janusRoom": room,
        "janusRoomSecret": "bench-secret",
        "janusRoomPin": "",
        "janusBitrate": bitrate,
        "janusAdminKey": rig.janus.admin_key,
    }  # fmt: skip  (the original's keys: docs/protocol.md)
    config_path = rig.workdir / f"{name}.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVH_CAMERA_CONFIG_")}
    env["CONFIG_PATH"] = str(config_path)
    process = rig.child(kind.argv, name, env=env, cpus=rig.server_cpus)
    ready = process.expect(kind.ready_marker)
    process.start()
    await process.wait(ready, "ready", STEP_TIMEOUT)
    server = Server(kind, process, port, room)
    for slot, token in enumerate(tokens):
        await server.activate(slot, token)
    return server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the benchmarks that measure servers side by side (fan-out, soak)."""
    parser.add_argument(
        "--baseline", type=_built_server, metavar="PATH",
        help="the original server's built dist/server.js: measure it too, before ours",
    )  # fmt: skip
    parser.add_argument(
        "--uvloop", action=argparse.BooleanOptionalAction, default=True,
        help="our server's event loop: uvloop (default) or asyncio's own",
    )  # fmt: skip
    parser.add_argument(
        "--server-gc-threshold", default="", metavar="T0,T1,T2",
        help="our server's gc.set_threshold (default: its own tuning)",
    )  # fmt: skip
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    add_rig_arguments(parser, pin=True)


def _built_server(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no built original server at {text}")
    return Path(text)


def kinds(args: argparse.Namespace) -> list[ServerKind]:
    """The servers to measure, in order: the original (if asked for), then ours."""
    mine = ours(args.uvloop, args.server_gc_threshold)
    return [original(args.baseline), mine] if args.baseline is not None else [mine]


def run_info(rig: Rig, args: argparse.Namespace) -> dict[str, str]:
    """The machine and how each process ran, for the report."""
    info = machine_info(rig.load_before)
    load_loop = type(asyncio.get_running_loop()).__module__
    info["load generator"] = f"{load_loop} loop, {cpus_text(rig.load_cpus)}"
    loop = "uvloop" if args.uvloop else "asyncio"
    gc = f", gc.set_threshold({args.server_gc_threshold})" if args.server_gc_threshold else ""
    info["ours"] = f"bench.serve, {loop} loop{gc}, {cpus_text(rig.server_cpus)}"
    if args.baseline is not None:
        info["original"] = f"{describe_original(args.baseline)}, {cpus_text(rig.server_cpus)}"
    return info
