"""Runs a unit test's coroutine to its end on a new event loop, in a thread of its own.

Not asyncio.run in the test's thread: a loop left running on pytest's main thread (Playwright's sync API keeps
one while a browser is open) would make asyncio.run refuse to start; and each coroutine gets a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# A coroutine that must finish (a follower, a commit) gets this long before the test fails.
DEADLINE = 30.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result, or its exception; TimeoutError if it runs longer than DEADLINE seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, DEADLINE)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="unit-test-loop") as thread:
        return thread.submit(asyncio.run, bounded()).result()
