"""stop_tasks: a task that swallows one cancellation still ends."""

from __future__ import annotations

import asyncio
import contextlib

from cvh_camera.tasks import stop_tasks


async def _swallows_first_cancel(ended: list[str]) -> None:
    # what asyncio.wait_for does in Python 3.11 when its future completes meanwhile:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    try:
        await asyncio.Event().wait()
    finally:
        ended.append("done")


async def test_recancels_until_done() -> None:
    ended: list[str] = []
    task = asyncio.create_task(_swallows_first_cancel(ended), name="stubborn")
    await asyncio.sleep(0)
    assert await stop_tasks([task], timeout=5)
    assert ended == ["done"] and task.cancelled()


async def test_gives_up_after_the_timeout() -> None:
    release = asyncio.Event()

    async def deaf_until_released() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # ignores every cancellation until released

    task = asyncio.create_task(deaf_until_released(), name="deaf")
    await asyncio.sleep(0)
    assert not await stop_tasks([task], timeout=0.3)
    assert not task.done()
    release.set()
    await asyncio.wait_for(task, 1)
