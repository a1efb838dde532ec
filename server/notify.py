"""The notify interface (docs/protocol.md): lines for the controller, in a file or FIFO.

`notify()` never blocks: lines wait in a bounded queue and one writer task delivers them in
order. A FIFO is opened non-blocking; while nobody reads it (no reader, or a full pipe) the
lines wait and the writer retries, dropping the oldest beyond `max_pending` with a warning.
A missing path is created as a regular file.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_WAITING = (errno.ENXIO, errno.EAGAIN, errno.EPIPE)


class NotifyFile:
    def __init__(self, path: Path, *, max_pending: int = 1000, retry_interval: float = 0.5) -> None:
        self._path = path
        self._pending: collections.deque[bytes] = collections.deque()
        self._max_pending = max_pending
        self._retry = retry_interval
        self._wake = asyncio.Event()
        self._fd: int | None = None
        self._stalled = False

    def notify(self, line: str) -> None:
        if len(self._pending) >= self._max_pending:
            dropped = self._pending.popleft()
            log.warning("notify backlog full, dropped %r", dropped.decode().rstrip())
        self._pending.append(line.encode() + b"\n")
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def stalled(self) -> bool:
        """True while nobody reads the file (lines are waiting)."""
        return self._stalled

    async def run(self) -> None:
        """Deliver lines until cancelled."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    if not self._write_one():
                        await asyncio.sleep(
                            self._retry
                        )  # poll: a FIFO gives no readiness signal for readers
        finally:
            self._close()

    def flush(self) -> None:
        """Best-effort, non-blocking delivery of what is pending (shutdown)."""
        while self._pending and self._write_one():
            pass

    def _write_one(self) -> bool:
        line = self._pending[0]
        try:
            fd = self._open()
            written = os.write(fd, line)
        except OSError as error:
            return self._waiting(error)
        if written < len(line):  # partial write into a nearly full pipe: keep the rest
            self._pending[0] = line[written:]
            return False
        self._pending.popleft()
        if self._stalled:
            log.info("notify file %s is read again", self._path)
            self._stalled = False
        return True

    def _open(self) -> int:
        if self._fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC
            if not self._path.exists():
                flags |= os.O_CREAT
            self._fd = os.open(self._path, flags, 0o644)
        return self._fd

    def _waiting(self, error: OSError) -> bool:
        if error.errno == errno.EPIPE:
            self._close()  # the reader went away; reopen once another comes
        if not self._stalled:
            reason = "nobody reads it" if error.errno in _WAITING else error.strerror
            log.warning("notify file %s blocked (%s); lines wait", self._path, reason)
            self._stalled = True
        if error.errno not in _WAITING:
            self._close()
        return False

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class NoNotify:
    """No notify file configured: lines are dropped."""

    def notify(self, line: str) -> None:
        log.debug("notify (no file): %s", line)
