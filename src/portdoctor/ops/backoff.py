"""Exponential backoff with jitter: the delays `wait` sleeps between probes and `guard` waits
between restarts. Pure: the random draw is passed in, so tests pin it."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay n (0-based) is initial * factor**n, at most `maximum`, then spread by +/- `jitter`
    (a fraction) so that many waiters started together do not knock in step.

    >>> Backoff(0.1, 2.0, 1.0, 0.0).delay(3)
    0.8
    >>> Backoff(0.1, 2.0, 1.0, 0.0).delay(10)
    1.0
    """

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 2.0
    jitter: float = 0.2

    def base(self, n: int) -> float:
        """The delay before jitter: initial * factor**n, capped at maximum."""
        if n <= 0:
            return min(self.initial, self.maximum)
        # no overflow for large n: stop multiplying once the cap is reached
        value = self.initial
        for _ in range(n):
            value *= self.factor
            if value >= self.maximum:
                return self.maximum
        return value

    def delay(self, n: int, draw: float | None = None) -> float:
        """Delay n with jitter; `draw` in [0, 1) (random when None). Never below zero."""
        base = self.base(n)
        if not self.jitter:
            return round(base, 6)
        u = random.random() if draw is None else draw
        return max(0.0, base * (1.0 + self.jitter * (2.0 * u - 1.0)))
