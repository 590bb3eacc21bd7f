"""Capped exponential backoff with jitter, for reconnecting and retrying transfers."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from `start` up to `cap`, each scaled by a random factor in [0.5, 1)
    so that agents restarted together do not retry in lockstep."""

    def __init__(self, start: float = 0.05, cap: float = 2.0) -> None:
        self._start = start
        self._cap = cap
        self._next = start

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * (0.5 + random.random() / 2)

    def reset(self) -> None:
        self._next = self._start
