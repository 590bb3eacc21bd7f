"""Waiting in tests: poll a condition against a monotonic deadline, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(predicate: Callable[[], T | None], timeout: float = 10, interval: float = 0.01) -> T:
    """Return the predicate's first truthy result; an AssertionError inside it means "not yet".

    Fails with the last falsy result or assertion message once `timeout` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except AssertionError as not_yet:
            last: object = not_yet
        else:
            if result:
                return result
            last = result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s; last: {last!r}")
        time.sleep(interval)
