"""The camera bitrate: the tightest of configured, controller and Janus's estimate."""

from __future__ import annotations

from cvh_camera.appliance.bitrate import MIN_BITRATE, BitrateGovernor


def test_tightest_positive_limit_wins() -> None:
    applied: list[int] = []
    governor = BitrateGovernor(2_000_000, applied.append)
    governor.controller(500_000)
    governor.estimate(800_000)
    governor.controller(0)  # no controller limit any more: the estimate rules
    governor.estimate(3_000_000)  # more than configured: configured rules
    assert applied == [500_000, 800_000, 2_000_000]


def test_small_estimate_changes_are_ignored_and_floor_holds() -> None:
    applied: list[int] = []
    governor = BitrateGovernor(2_000_000, applied.append)
    governor.estimate(1_000_000)
    governor.estimate(1_020_000)  # within 5 %: no encoder restart for noise
    governor.controller(1_000)
    assert applied == [1_000_000, MIN_BITRATE]
