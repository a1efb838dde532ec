"""Processes of a benchmark: the server under test, its limits, its memory, the machine."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
WANTED_NOFILE = 16384


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


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(load generator CPUs, server CPU) when there are two or more CPUs, else None."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return set(cpus[:-1]), {cpus[-1]}


@dataclass
class ServerProcess:
    """`bench/serve.py` as a child process; `stop()` is idempotent and cannot hang."""

    config_path: Path
    log_path: Path
    uvloop: bool
    cpus: set[int] | None = None
    gc_threshold: str = ""  # "" = Python's default
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerStartError("server not started")
        return self._proc.pid

    def start(self) -> None:
        argv = [sys.executable, str(BENCH_DIR / "serve.py"), "--config", str(self.config_path)]
        argv += ["--uvloop" if self.uvloop else "--no-uvloop", "--log-gc"]
        if self.gc_threshold:
            argv += ["--gc-threshold", self.gc_threshold]
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT
            )
        if self.cpus:
            os.sched_setaffinity(self._proc.pid, self.cpus)

    async def wait_ready(self, url: str, timeout: float) -> None:
        """Until `GET /healthz` reports the Janus room ready."""
        try:
            async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
                while not await self._ready(http, url):
                    if self._proc is None or self._proc.poll() is not None:
                        raise ServerStartError(f"server exited\n{self.log_tail()}")
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise ServerStartError(f"server not ready in {timeout} s\n{self.log_tail()}") from None

    @staticmethod
    async def _ready(http: aiohttp.ClientSession, url: str) -> bool:
        try:
            async with http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                body = await r.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return bool(body.get("janus", {}).get("state") == "ready")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout`, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

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

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


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
