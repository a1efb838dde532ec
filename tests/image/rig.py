"""The host side of the emulated image test, run inside the test's network namespace:

    ip netns exec NS .venv/bin/python -m tests.image.rig --mode publish --disk … --workdir …

In `publish` mode a real Janus (HTTP API on the namespace's address, for the guest) and the
slot server with slot 0 pre-activated listen on 10.77.0.1, a socket.io receiver waits for
the guest's feed and an aiortc viewer decodes it. In both modes qemu boots the image with its
network on the namespace's tap device; the guest's serial console goes to console.log, and
its `CVH-TEST` lines (guest/usr/local/sbin/cvh-test-report) are collected. The last line
printed is `RESULT {json}`: what was seen and measured. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from appliance.sources.pattern import read_counter
from cvh_camera.janus_local import LocalJanus
from cvh_camera.viewer import FeedViewer
from server.config import JanusSettings, PreactivatedSlot, ServerConfig
from tests.integration.harness import Client, run_server

log = logging.getLogger("rig")

HOST_IP, GUEST_IP = "10.77.0.1", "10.77.0.2"
TAP = "tap0"
SERVER_PORT = 5000
JANUS_HTTP_PORT, JANUS_WS_PORT = 8088, 8188  # 8088: the appliance derives it from server.url
ROOM = 1000
SLOT = 0
TOKEN = "emulated-image-token-7f3a"
GUEST_STATUS_PORT = 8080
FRAMES = 10
MARKER = "CVH-TEST "
KERNEL_ARGS = "root=/dev/vda2 rootfstype=ext4 rw console=ttyAMA0 panic=-1"
POWERDOWN_TIMEOUT = 60.0


def guest_yaml(width: int, height: int, fps: int) -> str:
    """The cvh-camera.yaml a user writes for this setup (the test copies it with mcopy)."""
    return (
        "# Written by the emulated image test, as a user edits the boot partition.\n"
        f"server:\n  url: http://{HOST_IP}:{SERVER_PORT}\n"
        f"slot: {SLOT}\n"
        f'token: "{TOKEN}"\n'
        "name: Emulated camera\n"
        "camera:\n  source: test\n"
        f"  width: {width}\n  height: {height}\n  fps: {fps}\n"
        f"  bitrate: 400000\n  keyframe_interval: {fps * 2}\n"
    )


@dataclass
class NamespaceJanus(LocalJanus):
    """LocalJanus with its HTTP API on the namespace's address, where the guest reaches it."""

    host: str = HOST_IP

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/janus"

    def write_config(self, lib_dir: Path | None = None) -> Path:
        path = super().write_config(lib_dir)
        http = self.workdir / "janus.transport.http.jcfg"
        text = http.read_text()
        if 'ip = "127.0.0.1"' not in text:
            raise RuntimeError(f"unexpected Janus HTTP configuration: {text!r}")
        http.write_text(text.replace('ip = "127.0.0.1"', f'ip = "{self.host}"'))
        return path


def _die_with_parent() -> None:
    """In qemu's child process: SIGKILL when this rig dies, whatever the reason."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Guest:
    """qemu-system-aarch64 booting the image; collects the serial console's report lines."""

    args: argparse.Namespace
    console_path: Path
    qmp_path: Path
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    report: list[str] = field(default_factory=list)
    report_seen: dict[str, asyncio.Event] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None

    def command(self) -> list[str]:
        a = self.args
        return [
            "qemu-system-aarch64", "-M", "virt", "-cpu", a.cpu, "-smp", str(a.smp),
            "-m", str(a.memory), "-nodefaults", "-no-user-config", "-display", "none",
            "-monitor", "none", "-serial", "stdio", "-no-reboot",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            "-kernel", str(a.kernel), "-initrd", str(a.initrd), "-append", KERNEL_ARGS,
            "-drive", f"if=none,id=disk,format=raw,cache=unsafe,file={a.disk}",
            "-device", "virtio-blk-pci,drive=disk",
            "-netdev", f"tap,id=net,ifname={TAP},script=no,downscript=no",
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
        assert self.process is not None and self.process.stdout is not None
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
        assert self.process is not None
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
async def booted(args: argparse.Namespace) -> AsyncIterator[Guest]:
    guest = Guest(args, args.workdir / f"console-{args.mode}.log", args.workdir / "qmp.sock")
    await guest.start()
    try:
        yield guest
    finally:
        await guest.stop()


@contextlib.asynccontextmanager
async def janus_running(workdir: Path) -> AsyncIterator[NamespaceJanus]:
    janus = NamespaceJanus(
        workdir=workdir / "janus", http_port=JANUS_HTTP_PORT, ws_port=JANUS_WS_PORT,
        admin_key="cvh-image-admin", rtp_port_range=(20000, 20199),
    )  # fmt: skip
    janus.start()  # from the main thread: Janus is tied to its lifetime
    try:
        yield janus
    finally:
        janus.stop()


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
    unit = guest.lines("unit ")
    figures["unit"] = unit[0] if unit else None
    system = guest.lines("system ")
    figures["system"] = system[0] if system else None
    return figures


async def publish(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": "publish"}
    async with contextlib.AsyncExitStack() as stack:
        janus = await stack.enter_async_context(janus_running(args.workdir))
        config = ServerConfig(
            host=HOST_IP, port=SERVER_PORT, read_stdin=False, slots=2,
            notify_path=str(args.workdir / "notify.txt"),
            preactivated=(PreactivatedSlot(SLOT, TOKEN),),
            janus=JanusSettings(url=janus.http_url, room=ROOM, admin_key=janus.admin_key,
                                bitrate=1_000_000),
        )  # fmt: skip
        server = await stack.enter_async_context(run_server(config))
        receiver = await Client().connect(server.url)
        stack.push_async_callback(receiver.close)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        guest = await stack.enter_async_context(booted(args))
        try:
            await _check_stream(args, guest, receiver, janus, http, result)
            result["status_page"] = await _status_page(http)
            await guest.wait_report("done", args.report_timeout)
            result["guest"] = guest_figures(guest)
        finally:
            result["clean_powerdown"] = await guest.powerdown()
            with contextlib.suppress(TimeoutError):
                result["remove_feed_on_powerdown"] = await receiver.next("remove_feed", 0.1)
            result.setdefault("guest", guest_figures(guest))
    return result


async def _check_stream(
    args: argparse.Namespace,
    guest: Guest,
    receiver: Client,
    janus: NamespaceJanus,
    http: aiohttp.ClientSession,
    result: dict[str, Any],
) -> None:
    new_feed = await _until_qemu_exits(guest, receiver.next("new_feed", args.boot_timeout))
    result["new_feed"] = new_feed
    result["qemu_to_new_feed_s"] = guest.since_start()
    viewer = FeedViewer(http, janus.http_url, ROOM)
    try:
        await viewer.watch(new_feed["feedId"], timeout=30)
        sizes, counters = set(), []
        for _ in range(FRAMES):
            decoded = await viewer.next_frame(30)
            result.setdefault("qemu_to_first_frame_s", guest.since_start())
            sizes.add((decoded.frame.width, decoded.frame.height))
            counters.append(read_counter(decoded.frame))
        result["frame_sizes"] = sorted(sizes)
        result["frame_counters"] = counters
    finally:
        await viewer.close()


async def _until_qemu_exits(guest: Guest, awaitable: Any) -> Any:
    """Await `awaitable`, but give up at once if qemu exits (a panic, a bad disk…)."""
    assert guest.process is not None
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


async def _status_page(http: aiohttp.ClientSession) -> dict[str, Any]:
    """The appliance's JSON status page, if this version serves one."""
    url = f"http://{GUEST_IP}:{GUEST_STATUS_PORT}/"
    try:
        async with asyncio.timeout(10), http.get(url) as response:
            return {"http_status": response.status, "body": await response.json()}
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        return {"error": f"{type(error).__name__}: {error}"}


async def broken(args: argparse.Namespace) -> dict[str, Any]:
    """The image with a broken cvh-camera.yaml: wait until the guest reports the unit."""
    result: dict[str, Any] = {"mode": "broken"}
    async with booted(args) as guest:
        try:
            await guest.wait_report("done", args.boot_timeout + args.report_timeout)
        finally:
            result["clean_powerdown"] = await guest.powerdown()
            result["guest"] = guest_figures(guest)
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    job = publish(args) if args.mode == "publish" else broken(args)
    async with asyncio.timeout(args.timeout):
        return await job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("publish", "broken"), required=True)
    parser.add_argument("--disk", type=Path, required=True)
    parser.add_argument("--kernel", type=Path, required=True)
    parser.add_argument("--initrd", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--cpu", default="cortex-a72")
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--boot-timeout", type=float, default=360.0)
    parser.add_argument("--report-timeout", type=float, default=240.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    try:
        result = asyncio.run(run(args))
    except Exception as error:  # the one place: report what failed, as JSON
        log.exception("rig failed")
        result = {"mode": args.mode, "error": f"{type(error).__name__}: {error}"}
    result["rig_seconds"] = round(time.monotonic() - started, 1)
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
