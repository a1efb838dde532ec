"""Real-time slots (Pacer)."""

from __future__ import annotations

import threading
import time

import pytest

from cvh_camera.appliance.sources.pacing import Pacer


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_slots_are_computed_from_the_start_and_late_slots_are_skipped() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock=clock)
    stop = threading.Event()
    assert pacer.next_slot(stop) == (100_000_000, 0)
    clock.now = 100.1  # exactly on time for slot 1
    assert pacer.next_slot(stop) == (100_100_000, 0)
    clock.now = 100.55  # slots 2, 3, 4 are past: skip to the latest one that is due
    assert pacer.next_slot(stop) == (100_500_000, 3)
    clock.now = 100.6
    assert pacer.next_slot(stop) == (100_600_000, 0)


def test_pacer_waits_in_real_time_without_drift() -> None:
    pacer = Pacer(200)
    stop = threading.Event()
    started = time.monotonic()
    slots = [pacer.next_slot(stop) for _ in range(41)]
    elapsed = time.monotonic() - started
    stamps = [slot[0] for slot in slots if slot is not None]
    assert len(stamps) == 41
    assert stamps[-1] - stamps[0] == 200_000  # 40 intervals of 5 ms, no rounding drift
    assert 0.15 < elapsed < 1.0


def test_pacer_returns_none_once_stopped() -> None:
    pacer = Pacer(1)
    stop = threading.Event()
    assert pacer.next_slot(stop) is not None
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    assert pacer.next_slot(stop) is None  # the 1 s wait ends at once when stopped
    assert time.monotonic() - started < 0.9
    with pytest.raises(ValueError):
        Pacer(0)
