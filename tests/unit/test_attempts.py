"""server.attempts: failed sender_init attempts per address, on a fake clock."""

from __future__ import annotations

from cvh_camera.server import attempts
from cvh_camera.server.attempts import AttemptLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limit_trips_after_the_allowed_failures_and_says_how_long() -> None:
    clock = Clock()
    limiter = AttemptLimiter(limit=3, window=10, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
        clock.now += 1
    assert limiter.retry_after("10.0.0.1") == 7  # the first failure is 3 s old
    assert limiter.retry_after("10.0.0.2") == 0  # per address


def test_limit_resets_when_the_oldest_failure_leaves_the_window() -> None:
    clock = Clock()
    limiter = AttemptLimiter(limit=2, window=10, clock=clock)
    limiter.failed("a")
    clock.now += 5
    limiter.failed("a")
    assert limiter.retry_after("a") == 5
    clock.now += 5
    assert limiter.retry_after("a") == 0  # one failure left in the window
    limiter.failed("a")
    assert limiter.retry_after("a") == 5


def test_a_fraction_of_a_second_left_is_still_one_second() -> None:
    clock = Clock()
    limiter = AttemptLimiter(limit=1, window=10, clock=clock)
    limiter.failed("a")
    clock.now += 9.95
    assert limiter.retry_after("a") == 1


def test_the_table_forgets_the_address_seen_longest_ago() -> None:
    clock = Clock()
    limiter = AttemptLimiter(limit=1, window=60, clock=clock)
    limiter.failed("first")
    for number in range(attempts.MAX_ADDRESSES):
        limiter.failed(f"other-{number}")
    assert limiter.retry_after(f"other-{attempts.MAX_ADDRESSES - 1}") > 0
    assert limiter.retry_after("first") == 0
