"""The benchmarks' one process rig: a work folder, a local Janus and the processes under test.

`run(bench, …)` hands a benchmark its `Rig` and takes everything down again, on errors,
Ctrl-C and SIGTERM too. The rig starts the children: slot servers (`bench.servers`),
appliances (`Rig.appliance`) and any other process. A thread copies each child's output to
its log file and tells waiting coroutines when a line they wait for appears, so nothing
polls. Children get SIGTERM from Linux if the benchmark dies without cleaning up
(PR_SET_PDEATHSIG); with `pin`, servers run on the last CPU, this process and Janus on the
others. `cpu_seconds` and `rss_kib` sample any process.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cvh_camera.eventloop import new_event_loop
from cvh_camera.janus_local import LocalJanus, make_local_janus

if TYPE_CHECKING:
    from bench.servers import Server

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent  # children run here, so `-m bench.…` imports
STEP_TIMEOUT = 30.0  # a process coming up, a command applied, a feed appearing
FIRST_ROOM = 1000  # every server gets a Janus room of its own from here on
WANTED_NOFILE = 16384
LOG_TAIL_LINES = 25
PR_SET_PDEATHSIG = 1
Bench = Callable[["Rig"], Coroutine[Any, Any, int]]


class BenchError(Exception):
    """A process under test exited early or did not do what was expected in time."""


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
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def cpus_text(cpus: set[int] | None) -> str:
    return "not pinned" if cpus is None else "CPUs " + ",".join(map(str, sorted(cpus)))


def _in_child(cpus: set[int] | None, prctl: Callable[[int, int], int] | None) -> None:
    """Between fork and exec: pinned from exec on (every thread it starts stays there), and
    SIGTERM when the benchmark's thread that started it dies."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _prctl() -> Callable[[int, int], int] | None:
    """libc's prctl, looked up in the parent (not between fork and exec)."""
    try:
        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


class Child:
    """One process under test, its output in `log_path`; `stop()` is idempotent, cannot hang."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self.argv, self.log_path, self._env, self._cpus = list(argv), log_path, env, cpus
        self.name = log_path.stem
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.log_size = 0  # bytes in the log so far
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Future[str]]] = []
        self._ended = False

    def start(self) -> Child:
        """Spawn it; from the event loop's thread (the one that stays for the whole run)."""
        env = {**(self._env if self._env is not None else os.environ), "PYTHONUNBUFFERED": "1"}
        cpus, prctl = self._cpus, _prctl()
        self._proc = proc = subprocess.Popen(
            self.argv, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=lambda: _in_child(cpus, prctl),
        )  # fmt: skip
        if proc.stdin is None or proc.stdout is None:  # never: both are pipes
            raise BenchError(f"{self.name}: no pipes")
        os.set_blocking(proc.stdin.fileno(), False)  # a stuck child fails, never blocks us
        self._reader = threading.Thread(
            target=self._copy, args=(proc.stdout,), name=f"log-{self.name}", daemon=True
        )
        self._reader.start()
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BenchError(f"{self.name} not running")
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def signal(self, number: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(number)

    def expect(self, marker: str) -> asyncio.Future[str]:
        """A future of the next line containing `marker` (also before `start()`); it fails
        if the output ends first."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._ended:
                future.set_exception(BenchError(f"{self.name} exited before {marker!r}"))
            else:
                self._waiters.append((marker, asyncio.get_running_loop(), future))
        return future

    async def wait(self, line: asyncio.Future[str], what: str, timeout: float) -> str:
        """The line `expect` promised, within `timeout`; BenchError with the log's tail."""
        try:
            async with asyncio.timeout(timeout):
                return await line
        except TimeoutError:
            message = f"{self.name}: {what}: nothing after {timeout} s\n{self.log_tail()}"
            raise BenchError(message) from None
        except BenchError as error:
            raise BenchError(f"{error}\n{self.log_tail()}") from None

    def send_line(self, line: str) -> None:
        """One line on the child's stdin; never blocks (a full pipe fails)."""
        data = (line + "\n").encode()
        try:
            if self._proc is None or self._proc.stdin is None:
                raise BrokenPipeError("not running")
            if os.write(self._proc.stdin.fileno(), data) != len(data):
                raise BlockingIOError("pipe full")
        except OSError as error:
            raise BenchError(f"{self.name} not reading stdin: {error}") from None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; the exit status (None: never ran)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
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
        if self._reader is not None:
            self._reader.join(timeout)
        return proc.returncode

    def log_text(self, offset: int = 0) -> str:
        with contextlib.suppress(OSError), self.log_path.open("rb") as log_file:
            log_file.seek(offset)
            return log_file.read().decode(errors="replace")
        return ""

    def log_tail(self) -> str:
        return "\n".join(self.tail) or f"({self.name}: empty log)"

    def _copy(self, stream: IO[bytes]) -> None:
        """On the reader thread: every line into the log, waiters told; then the end."""
        with self.log_path.open("wb") as log_file:
            for raw in stream:
                log_file.write(raw)
                log_file.flush()
                self.log_size += len(raw)
                line = raw.decode(errors="replace").rstrip("\n")
                self.tail.append(line)
                self._settle(line)
        self._settle(None)

    def _settle(self, line: str | None) -> None:
        """Resolve the waiters whose marker is in `line`; all of them, failed, at the end."""
        with self._lock:
            self._ended = line is None
            done = [w for w in self._waiters if line is None or w[0] in line]
            self._waiters = [w for w in self._waiters if w not in done]
        for marker, loop, future in done:
            outcome = BenchError(f"{self.name} exited before {marker!r}") if line is None else line
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future, outcome)


def _resolve(future: asyncio.Future[str], outcome: str | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


@dataclass
class Rig:
    """Where a benchmark runs: its work folder, Janus, CPUs; what it starts is stopped at
    the end (`cleanup`)."""

    workdir: Path
    janus: LocalJanus
    cleanup: contextlib.ExitStack
    server_cpus: set[int] | None  # None: not pinned
    load_cpus: set[int] | None  # this process's (the load generator's) and Janus's
    load_before: float  # the 1-minute load average before the run
    rooms: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_ROOM))

    def child(self, argv: Sequence[str], name: str, **options: Any) -> Child:
        """A child logging to `<name>.log`, not started yet; stopped at the end."""
        process = Child(argv, self.workdir / f"{name}.log", **options)
        self.cleanup.callback(process.stop)
        return process

    def appliance(
        self, server: Server, token: str, camera: dict[str, Any], name: str, variant: str = ""
    ) -> Child:
        """`cvh-camera appliance` (or `bench.appliance_variant --variant …`) publishing into
        slot 0 of `server`, started."""
        config = {
            "server": {"url": server.url}, "slot": 0, "token": token, "name": "bench camera",
            "janus": {"url": self.janus.http_url, "room": server.room}, "camera": camera,
            "status": {"http_port": 0}, "log": {"level": "info"},
        }  # fmt: skip
        path = self.workdir / f"{name}.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        argv = [sys.executable, "-m", "cvh_camera", "appliance", "--config", str(path)]
        if variant:
            argv[2:4] = ["bench.appliance_variant", "--variant", variant]
        return self.child(argv, name).start()


def add_arguments(parser: argparse.ArgumentParser, *, pin: bool = False) -> None:
    """The options every benchmark has (and --pin for those that measure a server)."""
    parser.add_argument("--workdir", type=Path, help="keep configs and logs here")
    parser.add_argument(
        "--write-results", action="store_true", help="rewrite its section of bench/RESULTS.md"
    )
    if pin:
        parser.add_argument(
            "--pin",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="each server on the last CPU, load generator and Janus on the others",
        )


def _split_cpus() -> tuple[set[int], set[int]] | None:
    """(load generator CPUs, server CPU) when there are two or more CPUs, else None."""
    cpus = sorted(os.sched_getaffinity(0))
    return (set(cpus[:-1]), {cpus[-1]}) if len(cpus) > 1 else None


def _exit_on_sigterm() -> None:
    """Outside the event loop SIGTERM raises SystemExit, which unwinds through the cleanup."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)


async def _cancelled_by_sigterm(bench: Coroutine[Any, Any, int]) -> int:
    """Await `bench`; SIGTERM cancels it as Ctrl-C does, so every async cleanup runs. (A
    plain signal handler raising inside a protocol callback would not reach us on uvloop.)"""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await bench
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        _exit_on_sigterm()


def run(bench: Bench, *, workdir: Path | None, prefix: str, pin: bool = False) -> int:
    """Run `bench` in `workdir` (kept) or a temporary folder, with a local Janus, stopping
    every process it started on the way out. Its exit status, or 1 (failed) or 130
    (interrupted) after saying why."""
    _exit_on_sigterm()
    raise_nofile()
    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as cleanup:  # runs on errors, Ctrl-C and SIGTERM too
        split = _split_cpus() if pin else None
        if split is not None:
            os.sched_setaffinity(0, split[0])  # Janus inherits it
        if workdir is not None:
            folder = workdir.resolve()
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        janus = make_local_janus(folder / "janus")
        cleanup.callback(janus.stop)
        janus.start()
        loads, servers = split if split is not None else (None, None)
        rig = Rig(folder, janus, cleanup, servers, loads, load_before)
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                return runner.run(_cancelled_by_sigterm(bench(rig)))
        except (BenchError, ExceptionGroup) as error:
            failed = error.subgroup(BenchError) if isinstance(error, ExceptionGroup) else error
            if failed is None:
                raise
            while isinstance(failed, ExceptionGroup):  # a task group's: its first failure
                failed = failed.exceptions[0]
            print(f"benchmark failed: {failed}", file=sys.stderr)
            return 1
        except (asyncio.CancelledError, KeyboardInterrupt):
            print("interrupted: stopping every process", file=sys.stderr)
            return 130
