"""What the blocking client blocks on where the asyncio client awaits.

client/_sync.py is generated from client/_async.py (scripts/generate.py), which swaps client/_io_async.py for
this module: the two modules hold every difference between the flavours, with the same names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc

Channel = grpc.Channel
UnaryCall = grpc.UnaryUnaryMultiCallable

Result = TypeVar("Result")

sleep = time.sleep


def open_channel(address: str, options: Sequence[tuple[str, int | str]]) -> Channel:
    """An insecure channel; it connects on first use."""
    return grpc.insecure_channel(address, options=options)


def channel_ready(channel: Channel, timeout: float) -> bool:
    """Whether the channel is connected within `timeout` seconds."""
    ready = grpc.channel_ready_future(channel)
    try:
        ready.result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return False
    finally:
        ready.cancel()
    return True


def run_blocking(function: Callable[..., Result], *args: object) -> Result:
    """Calls `function` here: the blocking client does its file I/O on the caller's thread."""
    return function(*args)
