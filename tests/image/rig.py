"""The host side of the emulated image test, run inside the test's network namespace:

    ip netns exec NS .venv/bin/python -m tests.image.rig --mode publish --disk … --workdir …

In `publish` mode a real Janus (HTTP API on the namespace's address, for the guest) and the
slot server with slot 0 pre-activated listen on 10.77.0.1, a socket.io receiver waits for
the guest's feed and an aiortc viewer decodes it. In every mode qemu boots the image with its
network on the namespace's tap device; the guest's serial console goes to console.log, and
its `CVH-TEST` lines (guest/usr/local/sbin/cvh-test-report) are collected. The last line
printed is `RESULT {json}`: what was seen and measured. Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from cvh_camera.janus_local import LocalJanus
from cvh_camera.server.config import JanusSettings, PreactivatedSlot, ServerConfig
from tests.image.qemu_guest import Guest, Machine, booted, guest_figures, until_qemu_exits
from tests.integration.harness import Client, run_server
from tests.support.viewer import FeedViewer

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


def guest_yaml(width: int, height: int, fps: int, source: str = "picamera2") -> str:
    """The cvh-camera.yaml a user writes for this setup (the test copies it with mcopy)."""
    return (
        "# Written by the emulated image test, as a user edits the boot partition.\n"
        f"server:\n  url: http://{HOST_IP}:{SERVER_PORT}\n"
        f"slot: {SLOT}\n"
        f'token: "{TOKEN}"\n'
        "name: Emulated camera\n"
        f"camera:\n  source: {source}\n"
        f"  width: {width}\n  height: {height}\n  fps: {fps}\n"
        f"  bitrate: 400000\n  keyframe_interval: {fps * 2}\n"
    )


def boot(args: argparse.Namespace) -> contextlib.AbstractAsyncContextManager[Guest]:
    machine = Machine(args.disk, args.kernel, args.initrd, TAP, args.cpu, args.smp, args.memory)
    return booted(machine, args.workdir / f"console-{args.mode}.log", args.workdir / "qmp.sock")


async def wait_link_up(name: str, timeout: float) -> None:
    """Wait until the interface has a carrier (a tap: once qemu has opened it)."""
    carrier = Path("/sys/class/net") / name / "carrier"
    async with asyncio.timeout(timeout):
        while carrier.read_text().strip() != "1":
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def janus_running(workdir: Path) -> AsyncIterator[LocalJanus]:
    janus = LocalJanus(  # its APIs on the namespace's address, where the guest reaches it
        workdir=workdir / "janus", http_port=JANUS_HTTP_PORT, ws_port=JANUS_WS_PORT,
        admin_key="cvh-image-admin", rtp_port_range=(20000, 20199), host=HOST_IP,
    )  # fmt: skip
    janus.start()  # from the main thread: Janus is tied to its lifetime
    try:
        yield janus
    finally:
        janus.stop()


async def publish(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"mode": "publish"}
    async with contextlib.AsyncExitStack() as stack:
        # qemu first: Janus binds its HTTP API to the tap's address, which it only accepts
        # once the link is up, i.e. once qemu holds the tap. The guest needs far longer to
        # boot than Janus and the server to start.
        guest = await stack.enter_async_context(boot(args))
        await wait_link_up(TAP, 10)
        janus = await stack.enter_async_context(janus_running(args.workdir))
        config = ServerConfig(
            host=HOST_IP, port=SERVER_PORT, read_stdin=False, slots=2,
            notify_path=str(args.workdir / "notify.txt"),
            preactivated=(PreactivatedSlot(SLOT, TOKEN),),
            janus=JanusSettings(url=janus.http_url, room=ROOM, admin_key=janus.admin_key,
                                bitrate=1_000_000),
        )  # fmt: skip
        await stack.enter_async_context(run_server(config))
        receiver = await Client().connect(f"http://{HOST_IP}:{SERVER_PORT}")
        stack.push_async_callback(receiver.close)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        result["services_up_s"] = guest.since_start()
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
    with contextlib.suppress(OSError):
        result["notify"] = (args.workdir / "notify.txt").read_text().splitlines()
    return result


async def _check_stream(
    args: argparse.Namespace,
    guest: Guest,
    receiver: Client,
    janus: LocalJanus,
    http: aiohttp.ClientSession,
    result: dict[str, Any],
) -> None:
    new_feed = await until_qemu_exits(guest, receiver.next("new_feed", args.boot_timeout))
    result["new_feed"] = new_feed
    result["qemu_to_new_feed_s"] = guest.since_start()
    viewer = FeedViewer(http, janus.http_url, ROOM)
    try:
        await viewer.watch(new_feed["feedId"], timeout=30)
        sizes, digests = set(), []
        for _ in range(FRAMES):
            decoded = await viewer.next_frame(30)
            result.setdefault("qemu_to_first_frame_s", guest.since_start())
            sizes.add((decoded.frame.width, decoded.frame.height))
            luma = bytes(decoded.frame.planes[0])
            digests.append(hashlib.sha256(luma).hexdigest()[:16])
        result["frame_sizes"] = sorted(sizes)
        result["frame_digests"] = digests  # moving pictures: they differ
    finally:
        await viewer.close()


async def _status_page(http: aiohttp.ClientSession) -> dict[str, Any]:
    """The appliance's JSON status page, if this version serves one."""
    url = f"http://{GUEST_IP}:{GUEST_STATUS_PORT}/"
    try:
        async with asyncio.timeout(10), http.get(url) as response:
            return {"http_status": response.status, "body": await response.json()}
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        return {"error": f"{type(error).__name__}: {error}"}


async def report_only(args: argparse.Namespace) -> dict[str, Any]:
    """A boot the guest only reports on (a broken cvh-camera.yaml; the picamera2 probe):
    wait until the guest says it is done, then power it down."""
    result: dict[str, Any] = {"mode": args.mode}
    async with boot(args) as guest:
        try:
            await guest.wait_report("done", args.boot_timeout + args.report_timeout)
        finally:
            result["clean_powerdown"] = await guest.powerdown()
            result["guest"] = guest_figures(guest)
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    job = publish(args) if args.mode == "publish" else report_only(args)
    async with asyncio.timeout(args.timeout):
        return await job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("publish", "broken", "probe"), required=True)
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
