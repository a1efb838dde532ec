"""sd_notify over a real Unix datagram socket, as systemd would receive it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from cvh_camera.appliance.sdnotify import SystemdNotifier


def test_without_systemd_nothing_happens() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")  # no socket: a no-op, no error


async def test_messages_and_watchdog_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})
        assert notifier.watchdog_interval == 0.1
        notifier.ready("streaming since 12:00")
        assert server.recv(1024) == b"READY=1\nSTATUS=streaming since 12:00"
        task = asyncio.create_task(notifier.watchdog())
        try:
            for _ in range(2):
                assert await asyncio.to_thread(server.recv, 1024) == b"WATCHDOG=1"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_abstract_namespace_address() -> None:
    name = "cvh-test-notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert server.recv(64) == b"STOPPING=1"
