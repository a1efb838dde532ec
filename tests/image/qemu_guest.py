"""The emulated Pi: qemu-system-aarch64 booting the image's disk, its serial console and the
report lines the guest prints there (image/emulate/guest/usr/local/sbin/cvh-test-report).

The guest's only network is a tap device; the machine has no other device that reaches out
(-nodefaults, no user-mode networking). The power button (QMP system_powerdown) shuts it down
the way a person would, through systemd.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MARKER = "CVH-TEST "
KERNEL_ARGS = "root=/dev/vda2 rootfstype=ext4 rw console=ttyAMA0 panic=-1"
POWERDOWN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Machine:
    """What qemu boots: the disk, the kernel and initrd from its root file system, the tap."""

    disk: Path
    kernel: Path
    initrd: Path
    tap: str
    cpu: str = "cortex-a72"  # the Pi 4's core
    smp: int = 2
    memory_mb: int = 1024


def _die_with_parent() -> None:
    """In qemu's child process: SIGKILL when this rig dies, whatever the reason."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Guest:
    """qemu-system-aarch64 booting the image; collects the serial console's report lines."""

    machine: Machine
    console_path: Path
    qmp_path: Path
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    report: list[str] = field(default_factory=list)
    report_seen: dict[str, asyncio.Event] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    def command(self) -> list[str]:
        m = self.machine
        return [
            "qemu-system-aarch64", "-M", "virt", "-cpu", m.cpu, "-smp", str(m.smp),
            "-m", str(m.memory_mb), "-nodefaults", "-no-user-config", "-display", "none",
            "-monitor", "none", "-serial", "stdio", "-no-reboot",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-kernel", str(m.kernel), "-initrd", str(m.initrd), "-append", KERNEL_ARGS,
            "-drive", f"if=none,id=disk,format=raw,cache=unsafe,file={m.disk}",
            "-device", "virtio-blk-pci,drive=disk",
            "-netdev", f"tap,id=net,ifname={m.tap},script=no,downscript=no",
            "-device", "virtio-net-pci,netdev=net,mac=52:54:00:77:00:02,romfile=",
            "-device", "virtio-rng-pci",
        ]  # fmt: skip

    async def start(self) -> None:
        self.started = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._reader = asyncio.create_task(self._read_console(), name="console")

    def since_start(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def seen(self, prefix: str) -> asyncio.Event:
        return self.report_seen.setdefault(prefix, asyncio.Event())

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix) :].strip() for line in self.report if line.startswith(prefix)]

    async def _read_console(self) -> None:
        if self.process is None or self.process.stdout is None:
            return
        with self.console_path.open("wb") as console:
            while raw := await self.process.stdout.readline():
                console.write(raw)
                console.flush()
                line = raw.decode(errors="replace").replace("\r", "").rstrip("\n")
                if MARKER in line:
                    entry = line[line.index(MARKER) + len(MARKER) :]
                    self.report.append(entry)
                    for prefix, event in self.report_seen.items():
                        if entry.startswith(prefix):
                            event.set()

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    async def wait_report(self, prefix: str, timeout: float) -> None:
        """Wait for a report line starting with `prefix`; fail early if qemu exits."""
        event = self.seen(prefix)
        if any(line.startswith(prefix) for line in self.report):
            return
        if self.process is None:
            raise RuntimeError("qemu was not started")
        exited = asyncio.create_task(self.process.wait())
        seen = asyncio.create_task(event.wait())
        try:
            done, _ = await asyncio.wait({exited, seen}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            exited.cancel()
            seen.cancel()
        if seen not in done:
            why = "qemu exited" if self.exited else f"not within {timeout:.0f} s"
            raise TimeoutError(f"guest report '{prefix}': {why}")

    async def powerdown(self, timeout: float = POWERDOWN_TIMEOUT) -> bool:
        """Ask the guest to shut down (the virt machine's power button); kill qemu if it
        has not exited in time. True if it powered off by itself."""
        if self.process is None or self.exited:
            return False
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(5):
                await _qmp(self.qmp_path, "system_powerdown")
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
            clean = True
        except TimeoutError:
            clean = False
        await self.stop()
        return clean

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)


async def _qmp(path: Path, command: str) -> None:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        await reader.readline()  # greeting
        for execute in ("qmp_capabilities", command):
            writer.write(json.dumps({"execute": execute}).encode() + b"\n")
            await writer.drain()
            await reader.readline()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def booted(machine: Machine, console: Path, qmp: Path) -> AsyncIterator[Guest]:
    guest = Guest(machine, console, qmp)
    await guest.start()
    try:
        yield guest
    finally:
        await guest.stop()


async def until_qemu_exits(guest: Guest, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, but give up at once if qemu exits (a panic, a bad disk…)."""
    if guest.process is None:
        raise RuntimeError("qemu was not started")
    task = asyncio.ensure_future(awaitable)
    exited = asyncio.create_task(guest.process.wait())
    try:
        await asyncio.wait({task, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
    if not task.done():
        task.cancel()
        raise RuntimeError(f"qemu exited with status {guest.process.returncode}")
    return task.result()


SPAN = r"((?:[\d.]+(?:min|ms|s|us) ?)+)"  # systemd's time spans: "1min 2.345s", "845ms"


def seconds(span: str) -> float:
    units = {"min": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"([\d.]+)(min|ms|s|us)", span)
    return round(sum(float(value) * units[unit] for value, unit in parts), 3)


def guest_figures(guest: Guest) -> dict[str, Any]:
    """Boot figures from the guest's report: systemd-analyze and the unit's timestamps."""
    figures: dict[str, Any] = {}
    for line in guest.lines("analyze "):
        for span, name in re.findall(SPAN + r"\((\w+)\)", line):
            figures[f"systemd_{name}_s"] = seconds(span)
        if match := re.search(r"= " + SPAN, line):
            figures["systemd_total_s"] = seconds(match.group(1))
        if match := re.search(r"reached after " + SPAN, line):
            figures["target_reached_in_userspace_s"] = seconds(match.group(1))
    for line in guest.lines("monotonic_us "):
        stamps = dict(item.split("=", 1) for item in line.split())
        start, active = stamps.get("exec_start", ""), stamps.get("active", "")
        if start.isdigit() and active.isdigit() and int(active) > 0:
            figures["unit_started_s"] = round(int(start) / 1e6, 2)
            figures["unit_ready_s"] = round(int(active) / 1e6, 2)
            figures["appliance_start_to_ready_s"] = round((int(active) - int(start)) / 1e6, 2)
        with contextlib.suppress(ValueError):
            figures["streaming_s"] = round(float(stamps.get("streaming_s", "")), 2)
    for line in guest.lines("reached "):
        name, _, stamp = line.partition(" ")
        if stamp.strip().isdigit() and int(stamp) > 0:
            figures.setdefault("reached_s", {})[name] = round(int(stamp) / 1e6, 2)
    figures["journal"] = guest.lines("journal ")
    figures["probe_log"] = guest.lines("probe-log ")
    unit = guest.lines("unit ")
    figures["unit"] = unit[0] if unit else None
    system = guest.lines("system ")
    figures["system"] = system[0] if system else None
    return figures
