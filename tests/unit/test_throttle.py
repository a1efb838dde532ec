"""Keyframe requests are thinned out to one per hold-off."""

from __future__ import annotations

from cvh_camera.appliance.throttle import Throttle


def test_one_call_per_interval() -> None:
    now = [0.0]
    calls: list[float] = []
    throttle = Throttle(lambda: calls.append(now[0]), interval=0.3, clock=lambda: now[0])
    for t in (0.0, 0.1, 0.29, 0.31, 0.4, 1.0):
        now[0] = t
        throttle()
    assert calls == [0.0, 0.31, 1.0]
    assert throttle.dropped == 3
