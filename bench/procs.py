"""Processes of a benchmark: the servers under test, their limits, memory, the machine.

Two servers can be measured: ours (`bench/serve.py`, what `cvh-camera server` runs) and the
original Node.js camera server (its built `dist/server.js`). Both are started the way the
original is deployed: the legacy JSON configuration named by `CONFIG_PATH`, controller
commands on standard input (kept open), log on standard output. A thread copies the log to
a file and tells waiting coroutines when a line they wait for appears (the Janus room is
ready, a slot was activated), so nothing polls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any, TypeVar

from cvh_camera.janus_local import make_local_janus

BENCH_DIR = Path(__file__).resolve().parent
WANTED_NOFILE = 16384
LOG_TAIL_LINES = 20
FIRST_ROOM = 1000  # every server started gets a Janus room of its own from here on
T = TypeVar("T")


class ServerStartError(Exception):
    """The server under test exited or did not become ready."""


def raise_nofile(wanted: int = WANTED_NOFILE) -> int:
    """Raise this process's open-files limit towards `wanted` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    """Resident set size of process `pid` (VmRSS in /proc/<pid>/status), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


@dataclass(frozen=True)
class BenchEnv:
    """Where a benchmark runs its servers: work folder, local Janus, CPUs, room numbers."""

    workdir: Path
    janus_url: str
    admin_key: str
    cpus: set[int] | None  # the servers' CPUs, None = not pinned
    load_cpus: set[int] | None  # this process's (the load generator's) and Janus's
    rooms: Iterator[int]  # the next free Janus room number


def bench_env(
    cleanup: contextlib.ExitStack, workdir: Path | None, pin: bool, prefix: str
) -> BenchEnv:
    """Pin this process (with `pin`), make the work folder, start a local Janus (it inherits
    this process's CPUs); `cleanup` undoes it all."""
    split = split_cpus() if pin else None
    if split is not None:
        os.sched_setaffinity(0, split[0])
    if workdir is not None:
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    janus = make_local_janus(workdir / "janus")
    cleanup.callback(janus.stop)
    janus.start()
    loads, servers = split if split is not None else (None, None)
    return BenchEnv(
        workdir, janus.http_url, janus.admin_key, servers, loads, itertools.count(FIRST_ROOM)
    )


def cpus_text(cpus: set[int] | None) -> str:
    return "not pinned" if cpus is None else "CPUs " + ",".join(map(str, sorted(cpus)))


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The load generator's event loop: uvloop if installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, which unwinds through the caller's cleanup."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


async def cancelled_by_sigterm(main: Coroutine[Any, Any, T]) -> T:
    """Await `main`; SIGTERM cancels it, then raises SystemExit. (Raised from a plain signal
    handler inside a protocol callback, uvloop would keep the SystemExit until the loop
    stops.) Outside, exit_on_sigterm() holds again."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await main
    except asyncio.CancelledError:
        if terminated:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        exit_on_sigterm()


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(load generator CPUs, server CPU) when there are two or more CPUs, else None."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


def write_legacy_config(path: Path, port: int, janus_url: str, admin_key: str, room: int) -> None:
    """The original server's JSON configuration (docs/protocol.md), read by both servers."""
    config = {
        "port": port,
        "cameraSlots": 4,
        "notifyPath": "",
        "janusURL": janus_url,
        "janusRoom": room,
        "janusRoomSecret": "bench-secret",
        "janusRoomPin": "",
        "janusBitrate": 128000,
        "janusAdminKey": admin_key,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


@dataclass(frozen=True)
class ServerKind:
    """How to run one server under test, and the log lines that tell its progress."""

    name: str  # "ours" or "original"
    argv: tuple[str, ...]
    ready_marker: str  # the Janus room exists and socket.io is served
    activated_marker: str  # `.format(slot=…)`: the controller's activate_slot was applied
    logs_gc: bool  # logs its full garbage collections (ours, through serve.py --log-gc)


def ours(uvloop: bool, gc_threshold: str = "") -> ServerKind:
    """Our slot server through `bench/serve.py` (uvloop or not, GC threshold or its own)."""
    argv = [sys.executable, str(BENCH_DIR / "serve.py")]
    argv += ["--uvloop" if uvloop else "--no-uvloop", "--log-gc"]
    if gc_threshold:
        argv += ["--gc-threshold", gc_threshold]
    # aiohttp is listening before the room's first Janus round trip ends.
    return ServerKind(
        "ours", tuple(argv), "janus room ready room=", "slot activated slot={slot} ", True
    )


def original(server_js: Path) -> ServerKind:
    """The original Node.js server; it listens at start, before it sets up the Janus room."""
    node = shutil.which("node")
    if node is None:
        raise ServerStartError("node not found: the original server needs Node.js")
    if not server_js.is_file():
        raise ServerStartError(f"no built original server at {server_js}")
    return ServerKind(
        "original",
        (node, str(server_js.resolve())),
        "Created new janus room",
        "Got command from stdin: activate_slot {slot} ",
        False,
    )


class LogTee:
    """Copies a child's output to a file, line by line, and resolves waiters on markers."""

    def __init__(self, stream: IO[bytes], log_path: Path) -> None:
        self._stream = stream
        self._log_path = log_path
        self._lock = threading.Lock()
        self._waiters: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._ended = False
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.size = 0  # bytes written to the log file
        self._thread = threading.Thread(target=self._copy, name="log tee", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def expect(self, marker: str) -> asyncio.Future[None]:
        """A future done when a later line contains `marker`; failed if the output ends."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._ended:
                future.set_exception(ServerStartError(f"exited before {marker!r}"))
            else:
                self._waiters.append((marker, loop, future))
        return future

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _copy(self) -> None:
        with self._log_path.open("wb") as log_file:  # one run's log: `size` is its offset
            for raw in self._stream:
                log_file.write(raw)
                log_file.flush()
                self.size += len(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                self.tail.append(line)
                self._resolve(line.__contains__, None)
        self._resolve(lambda marker: True, "exited")

    def _resolve(self, matches: Callable[[str], bool], failure: str | None) -> None:
        with self._lock:
            if failure is not None:
                self._ended = True
            done = [w for w in self._waiters if matches(w[0])]
            self._waiters = [w for w in self._waiters if w not in done]
        for marker, loop, future in done:
            error = ServerStartError(f"{failure} before {marker!r}") if failure else None
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: asyncio.Future[None], error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


@dataclass
class ServerProcess:
    """A server under test as a child process; `stop()` is idempotent and cannot hang."""

    kind: ServerKind
    config_path: Path  # legacy JSON, handed over as CONFIG_PATH
    log_path: Path
    cpus: set[int] | None = None  # pinned (from exec on, all its threads) or not
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tee: LogTee | None = field(default=None, init=False, repr=False)
    _ready: asyncio.Future[None] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerStartError(f"{self.kind.name} server not started")
        return self._proc.pid

    def start(self) -> None:
        """Spawn it; call from the event loop that will wait for it."""
        argv = list(self.kind.argv)
        if self.cpus:  # pinned from exec on: every thread it starts stays there
            if shutil.which("taskset") is None:
                raise ServerStartError("taskset (util-linux) not found: run with --no-pin")
            argv = ["taskset", "-c", ",".join(map(str, sorted(self.cpus))), *argv]
        if shutil.which("setpriv") is not None:  # and it goes if the bench is killed
            argv = ["setpriv", "--pdeathsig", "TERM", *argv]
        env = {**os.environ, "CONFIG_PATH": str(self.config_path), "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("CVH_CAMERA_CONFIG_")}
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self._proc = proc
        if proc.stdin is None or proc.stdout is None:  # never: both are pipes
            raise ServerStartError("no pipes to the server")
        os.set_blocking(proc.stdin.fileno(), False)  # a stuck server fails, never blocks us
        self._tee = LogTee(proc.stdout, self.log_path)
        self._ready = self._tee.expect(self.kind.ready_marker)
        self._tee.start()

    async def wait_ready(self, timeout: float) -> None:
        """Until the server logs that its Janus room is ready."""
        if self._ready is None:
            raise ServerStartError(f"{self.kind.name} server not started")
        await self._wait(self._ready, "ready", timeout)

    async def activate(self, slot: int, token: str, timeout: float) -> None:
        """`activate_slot <slot> <token>` on its stdin, until it has applied it."""
        applied = self._require_tee().expect(self.kind.activated_marker.format(slot=slot))
        self.send_line(f"activate_slot {slot} {token}")
        await self._wait(applied, f"activate slot {slot}", timeout)

    def send_line(self, line: str) -> None:
        """One controller command on the server's stdin (never blocks: a full pipe fails)."""
        if self._proc is None or self._proc.stdin is None:
            raise ServerStartError(f"{self.kind.name} server not started")
        data = (line + "\n").encode()
        try:
            written = os.write(self._proc.stdin.fileno(), data)
        except (BlockingIOError, BrokenPipeError) as error:
            raise ServerStartError(f"{self.kind.name} server not reading stdin: {error}") from None
        if written != len(data):
            raise ServerStartError(f"{self.kind.name} server not reading stdin (pipe full)")

    async def _wait(self, future: asyncio.Future[None], what: str, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise ServerStartError(
                f"{self.kind.name} server: {what}: nothing after {timeout} s\n{self.log_tail()}"
            ) from None
        except ServerStartError as error:
            raise ServerStartError(f"{self.kind.name} server {error}\n{self.log_tail()}") from None

    def _require_tee(self) -> LogTee:
        if self._tee is None:
            raise ServerStartError(f"{self.kind.name} server not started")
        return self._tee

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; then close its stdin and log."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._tee is not None:
            self._tee.join(timeout)

    def log_size(self) -> int:
        return self._tee.size if self._tee is not None else 0

    def full_gcs_since(self, offset: int) -> tuple[float, ...]:
        """Durations (ms) of the full collections the server logged after byte `offset`."""
        with self.log_path.open("rb") as log_file:
            log_file.seek(offset)
            text = log_file.read().decode(errors="replace")
        return tuple(
            float(line.split("took_ms=", 1)[1].split()[0])
            for line in text.splitlines()
            if "gc generation=2 took_ms=" in line
        )

    def log_tail(self) -> str:
        if self._tee is None or not self._tee.tail:
            return "(no server log)"
        return "\n".join(self._tee.tail)


def describe_original(server_js: Path) -> str:
    """Node's version, the original's socket.io version and where it is, for a report."""
    node = shutil.which("node") or "node"
    run = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    package = server_js.resolve().parent.parent / "node_modules" / "socket.io" / "package.json"
    try:
        socketio = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        socketio = "unknown"
    return f"node {run.stdout.strip() or '?'}, socket.io {socketio}, {server_js}"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = []
    for package in ("python-socketio", "python-engineio", "aiohttp", "uvloop"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": ", ".join(versions),
    }
