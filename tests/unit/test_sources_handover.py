"""The hand-over from a producer thread to asyncio: the bounded unit queue and its drop
policy, then the owned thread around it (ThreadHandover)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from cvh_camera.appliance.sources.base import AccessUnit, SourceError
from cvh_camera.appliance.sources.handover import ThreadHandover, UnitQueue, queue_size


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


Ready = Callable[[], None]


def counting(
    handover: ThreadHandover, *, first: int = 0
) -> Callable[[threading.Event, Ready], None]:
    """A producer that pushes numbered units (a keyframe every 10) until stopped."""

    def produce(stop: threading.Event, ready: Ready) -> None:
        ready()
        n = first
        while not stop.wait(0.001):
            handover.push(unit(n, key=n % 10 == 0))
            n += 1

    return produce


async def test_a_plain_callable_produces_through_the_handover_and_is_joined() -> None:
    before = set(threading.enumerate())
    handover = ThreadHandover("bench", maxsize=queue_size(30))
    with pytest.raises(SourceError, match="bench source was not started"):
        await handover.get()
    await handover.start(counting(handover))
    assert handover.running
    with pytest.raises(SourceError, match="already running"):
        await handover.start(counting(handover))
    received = [(await handover.get()).timestamp_us for _ in range(15)]
    await handover.stop()
    assert received == list(range(15))
    assert not handover.running
    assert set(threading.enumerate()) == before
    with pytest.raises(SourceError, match="bench source stopped"):
        await handover.get()
    await handover.stop()  # idempotent


async def test_a_stopped_handover_starts_again_with_a_fresh_queue() -> None:
    handover = ThreadHandover("test", maxsize=4)
    await handover.start(counting(handover))
    await handover.get()
    await handover.stop()
    await handover.start(counting(handover, first=100))
    try:
        assert (await handover.get()).timestamp_us == 100  # nothing of the first run is left
    finally:
        await handover.stop()


async def test_a_failure_before_ready_is_raised_by_start() -> None:
    before = set(threading.enumerate())

    def no_camera(stop: threading.Event, ready: Ready) -> None:
        raise SourceError("no camera found")

    def broken(stop: threading.Event, ready: Ready) -> None:
        raise RuntimeError("driver missing")

    def gives_up(stop: threading.Event, ready: Ready) -> None:
        return

    handover = ThreadHandover("test", maxsize=4)
    with pytest.raises(SourceError, match=r"^no camera found$"):
        await handover.start(no_camera)
    with pytest.raises(SourceError, match="the test source cannot start: driver missing"):
        await handover.start(broken)
    with pytest.raises(SourceError, match="ended before it was ready"):
        await handover.start(gives_up)
    assert set(threading.enumerate()) == before


async def test_a_failure_after_ready_ends_the_stream_with_a_source_error() -> None:
    handover = ThreadHandover("test", maxsize=4)
    taken = threading.Event()

    def dies(stop: threading.Event, ready: Ready) -> None:
        ready()
        handover.push(unit(0, key=True))
        taken.wait(2)
        raise RuntimeError("encoder crashed")

    await handover.start(dies)
    try:
        assert (await handover.get()).timestamp_us == 0
        taken.set()
        with pytest.raises(SourceError, match="the test source failed: encoder crashed"):
            await asyncio.wait_for(handover.get(), 2)
    finally:
        await handover.stop()


async def test_fail_ends_the_stream_with_that_error_and_a_producer_that_returns_ends_it() -> None:
    handover = ThreadHandover("test", maxsize=4)

    def reports(stop: threading.Event, ready: Ready) -> None:
        ready()
        handover.fail(SourceError("the camera delivered no frame for 5 s"))

    await handover.start(reports)
    with pytest.raises(SourceError, match="no frame for 5 s"):
        await asyncio.wait_for(handover.get(), 2)
    await handover.stop()

    def finite(stop: threading.Event, ready: Ready) -> None:
        ready()

    await handover.start(finite)
    with pytest.raises(SourceError, match="the test source ended"):
        await asyncio.wait_for(handover.get(), 2)
    await handover.stop()


async def test_a_producer_that_is_not_ready_in_time_is_stopped() -> None:
    handover = ThreadHandover("slow", maxsize=4, start_timeout=0.1)

    def slow(stop: threading.Event, ready: Ready) -> None:
        stop.wait(5)

    started = time.monotonic()
    with pytest.raises(SourceError, match="did not start within"):
        await handover.start(slow)
    assert time.monotonic() - started < 2
    assert not handover.running


async def test_a_producer_that_ignores_stop_is_abandoned_within_the_bound() -> None:
    release = threading.Event()
    handover = ThreadHandover("stuck", maxsize=4, stop_timeout=0.2)

    def stuck(stop: threading.Event, ready: Ready) -> None:
        ready()
        release.wait(5)

    await handover.start(stuck)
    started = time.monotonic()
    await handover.stop()
    assert time.monotonic() - started < 1.0
    assert handover.running  # abandoned, not joined
    release.set()
    await asyncio.sleep(0)


async def test_overflow_calls_the_owner_once_per_gap() -> None:
    overflows = Overflows()
    handover = ThreadHandover("test", maxsize=4, on_overflow=overflows)
    pushed = threading.Event()

    def burst(stop: threading.Event, ready: Ready) -> None:
        ready()
        for n in range(30):
            handover.push(unit(n, key=n % 10 == 0))
        pushed.set()
        stop.wait()

    await handover.start(burst)
    try:
        await asyncio.to_thread(pushed.wait, 2)
        assert overflows.count == 3 and handover.dropped > 0
        assert (await handover.get()).keyframe
    finally:
        await handover.stop()


def test_the_queue_holds_about_a_second() -> None:
    assert queue_size(30) == 30
    assert queue_size(1) == 4
