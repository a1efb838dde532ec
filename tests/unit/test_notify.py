"""The notify file: a regular file, a FIFO that is read, and a FIFO that nobody reads."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cvh_camera.server.notify import NotifyFile


@contextlib.asynccontextmanager
async def running(notifier: NotifyFile) -> AsyncIterator[NotifyFile]:
    task = asyncio.create_task(notifier.run())
    try:
        yield notifier
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_regular_file_is_created_and_appended(tmp_path: Path) -> None:
    path = tmp_path / "notify.txt"
    async with running(NotifyFile(path)) as notifier:
        notifier.notify("new_feed 1")
        notifier.notify("custom_name 1 Anna")
        await wait_until(lambda: notifier.pending == 0)
    assert path.read_text() == "new_feed 1\ncustom_name 1 Anna\n"


async def test_fifo_without_reader_never_blocks_and_delivers_later(tmp_path: Path) -> None:
    path = tmp_path / "notify.fifo"
    os.mkfifo(path)
    async with running(NotifyFile(path, retry_interval=0.02)) as notifier:
        for i in range(3):
            notifier.notify(f"new_feed {i}")  # returns at once although nobody reads
        await wait_until(lambda: notifier.stalled)
        assert notifier.pending == 3
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            await wait_until(lambda: notifier.pending == 0)
            data = os.read(reader, 4096)
        finally:
            os.close(reader)
    assert data == b"new_feed 0\nnew_feed 1\nnew_feed 2\n"


async def test_full_fifo_keeps_loop_free_and_bounds_backlog(tmp_path: Path) -> None:
    path = tmp_path / "notify.fifo"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    try:
        async with running(NotifyFile(path, max_pending=50, retry_interval=0.01)) as notifier:
            line = "custom_name 0 " + "x" * 4000
            for _ in range(200):  # ~800 kB: more than the pipe holds
                notifier.notify(line)
                await asyncio.sleep(0)
            await wait_until(lambda: notifier.stalled)  # the loop still runs meanwhile
            assert 0 < notifier.pending <= 50
    finally:
        os.close(reader)


def test_flush_without_reader_returns(tmp_path: Path) -> None:
    path = tmp_path / "notify.fifo"
    os.mkfifo(path)
    notifier = NotifyFile(path)
    notifier.notify("remove_feed 0")
    notifier.flush()
    assert notifier.pending == 1


@pytest.mark.parametrize("line", ["new_feed 0", "remove_feed 3"])
async def test_each_line_ends_with_newline(tmp_path: Path, line: str) -> None:
    path = tmp_path / "n"
    async with running(NotifyFile(path)) as notifier:
        notifier.notify(line)
        await wait_until(lambda: notifier.pending == 0)
    assert path.read_bytes() == line.encode() + b"\n"
