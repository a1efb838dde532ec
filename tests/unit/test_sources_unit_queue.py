"""The bounded hand-over from a producer thread to asyncio."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cvh_camera.appliance.sources.base import AccessUnit, SourceError
from cvh_camera.appliance.sources.unit_queue import UnitQueue


def unit(n: int, *, key: bool = False) -> AccessUnit:
    return AccessUnit(data=n.to_bytes(4, "big"), timestamp_us=n, keyframe=key)


class Overflows:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def drain(queue: UnitQueue) -> list[int]:
    return [(await queue.get()).timestamp_us for _ in range(len(queue))]


async def test_units_come_out_in_order() -> None:
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=10)
    for n in range(5):
        queue.push(unit(n, key=n == 0))
    assert await drain(queue) == [0, 1, 2, 3, 4]
    assert queue.dropped == 0


async def test_consumer_always_starts_at_a_keyframe() -> None:
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=10)
    queue.push(unit(0))
    queue.push(unit(1))
    queue.push(unit(2, key=True))
    queue.push(unit(3))
    assert await drain(queue) == [2, 3]
    assert queue.dropped == 2


async def test_full_queue_drops_until_next_keyframe_and_asks_for_one() -> None:
    overflows = Overflows()
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=3, on_overflow=overflows)
    queue.push(unit(0, key=True))
    queue.push(unit(1))
    queue.push(unit(2))
    queue.push(unit(3))  # full: dropped, a keyframe is requested
    assert overflows.count == 1
    assert (await queue.get()).timestamp_us == 0  # room again, but a P-frame after a gap is useless
    queue.push(unit(4))
    queue.push(unit(5))
    assert overflows.count == 1  # asked once per overflow
    queue.push(unit(6, key=True))
    assert await drain(queue) == [1, 2, 6]
    queue.push(unit(7))
    assert await drain(queue) == [7]
    assert queue.dropped == 3


async def test_keyframe_into_a_full_queue_replaces_the_stale_backlog() -> None:
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=3)
    for n in range(3):
        queue.push(unit(n, key=n == 0))
    queue.push(unit(3))
    queue.push(unit(4, key=True))
    queue.push(unit(5))
    assert await drain(queue) == [4, 5]
    assert queue.dropped == 4  # 3 (full), then 0, 1, 2 (stale)


async def test_close_with_error_wakes_a_waiting_consumer() -> None:
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=3, name="test")
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.close(SourceError("camera gone"))
    with pytest.raises(SourceError, match="camera gone"):
        await asyncio.wait_for(waiting, 1)
    queue.close(SourceError("second error is ignored"))
    with pytest.raises(SourceError, match="camera gone"):
        await queue.get()


async def test_close_without_error_means_stopped_and_ignores_later_pushes() -> None:
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=3, name="test")
    queue.push(unit(0, key=True))
    queue.close()
    queue.push(unit(1, key=True))
    assert queue.closed and len(queue) == 0
    with pytest.raises(SourceError, match="test source stopped"):
        await queue.get()


async def test_cancelled_get_leaves_the_queue_usable() -> None:
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=3)
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    queue.push(unit(0, key=True))
    assert (await asyncio.wait_for(queue.get(), 1)).timestamp_us == 0


async def test_pushes_from_a_real_thread_arrive_in_order_without_blocking() -> None:
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=1000)
    count = 500
    slowest = 0.0

    def produce() -> None:
        nonlocal slowest
        for n in range(count):
            started = time.perf_counter()
            queue.push(unit(n, key=n % 50 == 0))
            slowest = max(slowest, time.perf_counter() - started)

    thread = threading.Thread(target=produce)
    thread.start()
    received = [(await asyncio.wait_for(queue.get(), 5)).timestamp_us for _ in range(count)]
    thread.join()
    assert received == list(range(count))
    assert slowest < 0.05


async def test_a_consumer_that_never_reads_never_blocks_the_producer() -> None:
    overflows = Overflows()
    queue = UnitQueue(asyncio.get_running_loop(), maxsize=5, on_overflow=overflows)
    durations: list[float] = []

    def produce() -> None:
        for n in range(300):
            started = time.perf_counter()
            queue.push(unit(n, key=n % 30 == 0))
            durations.append(time.perf_counter() - started)

    thread = threading.Thread(target=produce)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(queue) <= 5
    assert queue.dropped >= 290
    assert overflows.count == 10  # once per keyframe interval
    assert max(durations) < 0.05


async def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        UnitQueue(asyncio.get_running_loop(), maxsize=0)
