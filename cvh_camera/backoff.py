"""Capped exponential backoff with jitter, reset after a success."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    rng: random.Random = field(default_factory=random.Random)
    _next: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid backoff parameters: {self!r}")
        self._next = self.initial

    def next_delay(self) -> float:
        """The delay before the next attempt; grows until `maximum`."""
        base = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return base * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def longest(self) -> float:
        """Jump to the longest delay (e.g. after an authentication failure) and return it."""
        self._next = self.maximum
        return self.next_delay()

    def reset(self) -> None:
        self._next = self.initial
