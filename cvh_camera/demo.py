"""`cvh-camera demo`: everything on this machine — a local Janus, the slot server with a
pre-activated slot and an appliance publishing the synthetic camera into it — and where
to look. Stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from cvh_camera.appliance.config import (
    ApplianceConfig,
    CameraSettings,
    JanusLink,
    ServerLink,
    StatusSettings,
)
from cvh_camera.appliance.runtime import running_appliance
from cvh_camera.janus_local import LocalJanus, find_free_port, make_local_janus
from cvh_camera.logsetup import setup_logging
from cvh_camera.server.app import ROOM, SHUTDOWN_GRACE, create_app
from cvh_camera.server.config import JanusSettings, PreactivatedSlot, ServerConfig

log = logging.getLogger(__name__)

DEMO_SLOT = 0  # the demo camera's
BROWSER_SLOT = 1  # for the browser sender page
DEMO_BITRATE = 2_500_000  # the room's limit: Janus asks publishers (REMB) to stay below it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address the server binds to")
    parser.add_argument("--port", type=int, default=5000, help="server port (busy: a free one)")
    parser.add_argument("--workdir", type=Path, help="folder for Janus config, logs, token")
    parser.add_argument(
        "--no-camera", action="store_true", help="no appliance: only Janus and the server"
    )


def run(args: argparse.Namespace) -> int:
    setup_logging("info")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers are set
        asyncio.run(_demo(args))
    return 0


async def _demo(args: argparse.Namespace) -> None:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cvh-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    async with _janus(workdir) as janus:
        token, browser_token = (_new_token(workdir, slot) for slot in (DEMO_SLOT, BROWSER_SLOT))
        config = replace(
            ServerConfig(),
            host=args.host,
            port=_usable_port(args.port),
            read_stdin=False,
            notify_path=str(workdir / "notify.txt"),
            preactivated=(
                PreactivatedSlot(DEMO_SLOT, token, "Demo camera"),
                PreactivatedSlot(BROWSER_SLOT, browser_token, "Browser sender"),
            ),
            janus=JanusSettings(
                url=janus.http_url, admin_key=janus.admin_key, bitrate=DEMO_BITRATE
            ),
        )
        async with contextlib.AsyncExitStack() as stack:
            app = await stack.enter_async_context(_server(config))
            await app[ROOM].wait_ready(15)
            if not args.no_camera:
                camera = _camera(config, janus, token)
                await stack.enter_async_context(running_appliance(camera))
            _announce(config, janus, workdir)
            await _until_signalled()


def _new_token(workdir: Path, slot: int) -> str:
    """A fresh slot token, kept in a file only its owner can read (never printed)."""
    token = secrets.token_urlsafe(16)
    path = workdir / f"slot{slot}.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def _camera(server: ServerConfig, janus: LocalJanus, token: str) -> ApplianceConfig:
    """An appliance on the synthetic camera, publishing into the demo's slot."""
    return ApplianceConfig(
        server=ServerLink(url=f"http://127.0.0.1:{server.port}"),
        slot=DEMO_SLOT,
        token=token,
        name="Demo camera",
        janus=JanusLink(url=janus.http_url, room=server.janus.room),
        camera=CameraSettings(source="test"),
        status=StatusSettings(http_port=0),
    )


@contextlib.asynccontextmanager
async def _janus(workdir: Path) -> AsyncIterator[LocalJanus]:
    janus = make_local_janus(workdir / "janus")
    janus.start()  # from the main thread: Janus is tied to its lifetime (see janus_local)
    try:
        yield janus
    finally:
        janus.stop()


@contextlib.asynccontextmanager
async def _server(config: ServerConfig) -> AsyncIterator[web.Application]:
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    try:
        yield app
    finally:
        await runner.cleanup()


def _usable_port(wanted: int) -> int:
    """`wanted` if it is free, else (or for 0) some free port."""
    if wanted == 0:
        return find_free_port()
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", wanted))
        except OSError:
            return find_free_port()
    return wanted


def _announce(config: ServerConfig, janus: LocalJanus, workdir: Path) -> None:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    base = f"http://{host}:{config.port}"
    token_file = workdir / f"slot{BROWSER_SLOT}.token"
    sender = f"{base}/sender?slot={BROWSER_SLOT}&pin=none&token=$(cat {token_file})"
    lines = [
        "",
        "CVH-Camera demo is running (Ctrl-C stops it)",
        f"  receiver page    {base}/",
        f"  slot server      {base}  (socket.io path {config.socketio_path})",
        f"  server status    {base}/healthz",
        f"  Janus HTTP API   {janus.http_url}  (browsers use {base}/janus)",
        f"  browser sender   {sender}",
        f"  slot tokens      {workdir}/slot{DEMO_SLOT}.token, slot{BROWSER_SLOT}.token",
        f"  notify lines     {workdir / 'notify.txt'}",
        "",
    ]
    print("\n".join(lines), flush=True)


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
    log.info("demo stopping")
