"""The camera encoder's bitrate: the tightest of what we were configured with, what the
controller allows (`new_controller_bitrate_limit`, 0 = no limit) and what Janus estimates
the path can carry (REMB)."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

MIN_BITRATE = 50_000  # below this a hardware encoder produces mush; we don't go there
MAX_BITRATE = 50_000_000  # the most the camera encoders are ever asked for
_REMB_HYSTERESIS = 0.05  # ignore estimate changes smaller than this fraction


def clamp_bitrate(bits_per_second: int) -> int:
    """The bitrate a camera encoder is set to when asked for `bits_per_second`."""
    return max(MIN_BITRATE, min(MAX_BITRATE, int(bits_per_second)))


class BitrateGovernor:
    def __init__(self, configured: int, apply: Callable[[int], None]) -> None:
        self._configured = configured
        self._apply = apply
        self._controller = 0
        self._estimate = 0
        self.effective = configured

    def controller(self, limit: int) -> None:
        self._controller = max(0, limit)
        self._update()

    def estimate(self, bitrate: int) -> None:
        if self._estimate and abs(bitrate - self._estimate) < self._estimate * _REMB_HYSTERESIS:
            return
        self._estimate = max(0, bitrate)
        self._update()

    def _update(self) -> None:
        caps = [c for c in (self._configured, self._controller, self._estimate) if c > 0]
        effective = max(MIN_BITRATE, min(caps))
        if effective != self.effective:
            log.info(
                "camera bitrate=%d (configured=%d controller=%d estimate=%d)",
                effective, self._configured, self._controller, self._estimate,
            )  # fmt: skip
            self.effective = effective
            self._apply(effective)
