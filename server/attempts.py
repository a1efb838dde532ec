"""Failed sender_init attempts per client address: guessing tokens made slow.

A client address that failed `limit` times within `window` seconds is refused until the
oldest of those failures is `window` seconds old, without its token being looked at.
The table stays small: an address's failures older than the window are forgotten when it
is next seen, and past `MAX_ADDRESSES` addresses the one seen longest ago goes.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

MAX_ADDRESSES = 10_000


class AttemptLimiter:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def retry_after(self, address: str) -> int:
        """Whole seconds until `address` may try again; 0 = now."""
        failures = self._recent(address)
        if len(failures) < self._limit:
            return 0
        return max(1, math.ceil(failures[0] + self._window - self._clock()))

    def failed(self, address: str) -> None:
        failures = self._recent(address)
        failures.append(self._clock())
        while len(failures) > self._limit:
            failures.popleft()

    def _recent(self, address: str) -> collections.deque[float]:
        failures = self._failures.pop(address, None)
        if failures is None:
            failures = collections.deque()
            if len(self._failures) >= MAX_ADDRESSES:
                self._failures.popitem(last=False)
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        self._failures[address] = failures  # now the most recently seen
        return failures
