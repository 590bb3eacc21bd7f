"""Capped exponential backoff: how long to wait before the next attempt at something that failed."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `first` up to `cap`.

    With `jitter`, each delay is scaled by a random factor in [0.5, 1), so that agents restarted together do
    not retry in lockstep. `reset()` starts again from `first`, once an attempt worked.
    """

    def __init__(self, first: float = 0.05, cap: float = 2.0, *, jitter: bool = True) -> None:
        self._first = first
        self._cap = cap
        self._jitter = jitter
        self._next = first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * (0.5 + random.random() / 2) if self._jitter else delay

    def reset(self) -> None:
        self._next = self._first
