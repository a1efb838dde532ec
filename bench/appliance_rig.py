"""What the appliance benchmarks share: a local Janus and slot server, the processes under
test, a receiver that hears `new_feed`, per-process CPU time, the machine, and RESULTS.md.

Everything runs on this machine. Every process started here is stopped by the caller's
`ExitStack` (SIGTERM, then SIGKILL), on errors, Ctrl-C and SIGTERM too; Janus and the
processes under test (not the slot server: `procs.ServerProcess`) also get SIGTERM from
Linux if the benchmark dies without cleaning up (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any, TypeVar

import socketio
from procs import ServerProcess, machine

from cvh_camera.janus_local import LocalJanus, find_free_port, make_local_janus

HOST = "127.0.0.1"
ROOM = 1000
TOKEN = "bench-slot-0-token"
STEP_TIMEOUT = 30.0  # a process coming up, a feed appearing
INTRO = "# Benchmarks\n\nFigures printed by the scripts in this folder; each writes its section.\n"
PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """A process under test exited early or did not do what was expected in time."""


# ----------------------------------------------------------------- processes


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """A process under test, its output in a log file; `stop()` is idempotent, cannot hang."""

    argv: Sequence[str]
    log_path: Path
    stdout_pipe: bool = False  # stdout to a pipe (for `read_json_line`), stderr to the log
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _lines: asyncio.Queue[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> Child:
        """Start the process; with `stdout_pipe`, call from the event loop's thread."""
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if self.stdout_pipe else log_file,
                stderr=log_file,
                preexec_fn=_die_with_parent,
            )
        if self.proc.stdout is not None:
            self._lines = asyncio.Queue()
            reader = threading.Thread(
                target=_pump_lines,
                args=(self.proc.stdout, asyncio.get_running_loop(), self._lines),
                name=f"stdout-{self.proc.pid}",
                daemon=True,  # never keeps the benchmark from exiting
            )
            reader.start()
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("process not started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, number: int) -> None:
        if self.alive() and self.proc is not None:
            self.proc.send_signal(number)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; the exit status (None if never run)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    async def read_json_line(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the process writes to stdout (with `stdout_pipe`)."""
        if self._lines is None:
            raise BenchError("no stdout pipe")
        try:
            async with asyncio.timeout(timeout):
                line = await self._lines.get()
        except TimeoutError:
            raise BenchError(
                f"no line from {self.argv[1]} in {timeout} s\n{self.log_tail()}"
            ) from None
        if not line:
            raise BenchError(f"{self.argv[1]} closed stdout\n{self.log_tail()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(empty log)"


def _pump_lines(
    stream: IO[bytes], loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[bytes]
) -> None:
    """On a thread: every line of `stream` into `lines`, then b"" at its end."""
    with contextlib.suppress(OSError, ValueError):
        for line in iter(stream.readline, b""):
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(lines.put_nowait, line)
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(lines.put_nowait, b"")
    stream.close()


def appliance_argv(config_path: Path) -> list[str]:
    """`cvh-camera appliance --config …`, with this interpreter (what the console script runs)."""
    return [sys.executable, "-m", "cvh_camera", "appliance", "--config", str(config_path)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------- Janus, server, receiver


class Receiver:
    """A socket.io receiver of the slot server (as the browser page is): feeds coming, going."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self._feeds: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._removed: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sio.on("new_feed", self._feeds.put_nowait)
        self.sio.on("remove_feed", self._removed.put_nowait)

    async def connect(self, url: str) -> None:
        await self.sio.connect(
            url, socketio_path="/socket.io", transports=["websocket"], wait_timeout=10
        )

    async def new_feed(self, child: Child, timeout: float = STEP_TIMEOUT) -> int:
        """The feed id of the next `new_feed`; fails early if `child` exits meanwhile."""
        payload = await self._wait(self._feeds, child, timeout, "new_feed")
        feed_id = payload.get("feedId")
        if not isinstance(feed_id, int):
            raise BenchError(f"new_feed without a feedId: {payload}")
        return feed_id

    async def remove_feed(self, timeout: float = STEP_TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            await self._removed.get()

    @staticmethod
    async def _wait(
        queue: asyncio.Queue[dict[str, Any]], child: Child, timeout: float, what: str
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.2):
                            return await queue.get()
                    if not child.alive():
                        raise BenchError(f"{child.argv[1:4]} exited\n{child.log_tail()}")
        except TimeoutError:
            raise BenchError(f"no {what} within {timeout} s\n{child.log_tail()}") from None

    async def close(self) -> None:
        await self.sio.disconnect()


@dataclass(frozen=True)
class Rig:
    workdir: Path
    janus: LocalJanus
    server_url: str
    room: int = ROOM
    token: str = TOKEN

    @property
    def janus_url(self) -> str:
        return self.janus.http_url


def start_janus(workdir: Path, cleanup: contextlib.ExitStack) -> LocalJanus:
    janus = make_local_janus(workdir / "janus")
    cleanup.callback(janus.stop)
    janus.start()
    return janus


async def start_server(
    workdir: Path, janus: LocalJanus, janus_bitrate: int, cleanup: contextlib.ExitStack
) -> Rig:
    """The slot server (bench/serve.py: what `cvh-camera server` runs) with slot 0 open."""
    port = find_free_port()
    config = {  # JSON is YAML
        "listen": {"host": HOST, "port": port},
        "slots": {"count": 4, "preactivated": [{"slot": 0, "token": TOKEN}]},
        "controller": {"stdin": False},
        "janus": {
            "url": janus.http_url,
            "room": ROOM,
            "admin_key": janus.admin_key,
            "bitrate": janus_bitrate,
        },
        "log": {"level": "info"},
    }
    config_path = workdir / "server.yaml"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    server = ServerProcess(config_path, workdir / "server.log", uvloop=True)
    cleanup.callback(server.stop)
    server.start()
    url = f"http://{HOST}:{port}"
    await server.wait_ready(url, STEP_TIMEOUT)
    return Rig(workdir, janus, url)


@contextlib.asynccontextmanager
async def receiver(rig: Rig) -> AsyncIterator[Receiver]:
    client = Receiver()
    await client.connect(rig.server_url)
    try:
        yield client
    finally:
        await client.close()


def appliance_config(rig: Rig, path: Path, camera: dict[str, Any]) -> Path:
    config = {
        "server": {"url": rig.server_url},
        "slot": 0,
        "token": rig.token,
        "name": "bench camera",
        "janus": {"url": rig.janus_url, "room": rig.room},
        "camera": camera,
        "status": {"http_port": 0},
        "log": {"level": "info"},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


# ----------------------------------------------------------------- the machine, RESULTS.md


def machine_info(load_before: float | None = None) -> dict[str, str]:
    """The machine; `load_before`: the 1-minute load average before the run (other work on
    the machine disturbs latencies more than CPU times)."""
    info = machine()
    versions = []
    for package in ("aiortc", "av", "aioice", "pylibsrtp", "python-socketio", "aiohttp"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    info["packages"] = ", ".join(versions)
    try:
        janus = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "janus"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        janus = ""
    info["janus"] = f"Debian janus {janus}" if janus else "janus (version unknown)"
    if load_before is not None:
        info["load average before the run"] = f"{load_before:.2f} (1 min)"
    return info


def command_line() -> str:
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    return shlex.join([python, *sys.argv])


def stamp() -> str:
    return f"`{command_line()}` — {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"


def replace_section(path: Path, heading: str, body: str) -> None:
    """Write `heading` + `body` as the `## ` section of that name in `path`, in place of the
    old one (or at the end); every other section stays as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else INTRO
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == heading]
    section = f"{heading}\n\n{body.strip()}\n"
    if not starts:
        path.write_text(text.rstrip() + "\n\n" + section, encoding="utf-8")
        return
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before, after = "".join(lines[:start]), "".join(lines[end:])
    path.write_text(before + section + ("\n" + after if after else ""), encoding="utf-8")


def cancel_on_sigterm() -> None:
    """From the benchmark's main coroutine: SIGTERM cancels it (as Ctrl-C does), so that every
    async cleanup runs, then the caller's ExitStack stops the processes."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


T = TypeVar("T")
Runner = Callable[[Path, contextlib.ExitStack], Coroutine[Any, Any, T]]


def run_with_workdir(workdir: Path | None, prefix: str, run: Runner[T]) -> T | int:
    """Run a benchmark in `workdir` (kept) or a temporary folder, stopping every process it
    started on the way out, also on errors and signals. Returns its result, or the exit
    status (1 failed, 130 interrupted) after saying why."""
    with contextlib.ExitStack() as cleanup:
        if workdir is not None:
            folder = workdir.resolve()
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        try:
            return asyncio.run(run(folder, cleanup))
        except BenchError as error:
            print(f"benchmark failed: {error}", file=sys.stderr)
            return 1
        except (asyncio.CancelledError, KeyboardInterrupt):
            print("interrupted: stopping every process", file=sys.stderr)
            return 130
