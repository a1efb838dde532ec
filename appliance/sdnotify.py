"""systemd's notify protocol (sd_notify) without libsystemd: READY, STATUS, WATCHDOG, STOPPING.

Datagrams go to the socket named by $NOTIFY_SOCKET (a leading "@" means the abstract
namespace). Outside systemd there is no such variable and every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, **fields: str) -> None:
        """Send e.g. READY="1", STATUS="streaming"; never raises (systemd may be gone)."""
        if not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as error:
            log.warning("sd_notify failed: %s", error)

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def stopping(self) -> None:
        self.send(STOPPING="1")

    async def watchdog(self) -> None:
        """Ping the watchdog from the event loop (a stuck loop stops the pings); cancel to end."""
        if self.watchdog_interval is None or not self._address:
            return
        while True:
            self.send(WATCHDOG="1")
            await asyncio.sleep(self.watchdog_interval)
