"""Stopping tasks for good.

A single `task.cancel()` can be lost: in Python 3.11, `asyncio.wait_for` (used inside
python-socketio's `call`, among others) returns the result instead of raising
CancelledError when its inner future completes in the same loop iteration as the cancel.
So an owner that stops its tasks cancels again until they are done, within a bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

RECANCEL_INTERVAL = 0.2


async def stop_tasks(tasks: Iterable[asyncio.Task[object]], timeout: float) -> bool:
    """Cancel `tasks` and wait until all are done; True if they were within `timeout`."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.error(
                "tasks still running after %.1fs: %s",
                timeout,
                sorted(t.get_name() for t in pending),
            )
            return False
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_INTERVAL, remaining))
    return True
