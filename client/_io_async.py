"""What the asyncio client awaits where the blocking client blocks.

client/_sync.py is generated from client/_async.py (scripts/generate.py), which swaps this module for
client/_io_sync.py: the two modules hold every difference between the flavours, with the same names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc.aio

Channel = grpc.aio.Channel
UnaryCall = grpc.aio.UnaryUnaryMultiCallable

Result = TypeVar("Result")

sleep = asyncio.sleep


def open_channel(address: str, options: Sequence[tuple[str, int | str]]) -> Channel:
    """An insecure channel; made inside the event loop it serves, since a grpc.aio channel is bound to it."""
    return grpc.aio.insecure_channel(address, options=options)


async def channel_ready(channel: Channel, timeout: float) -> bool:
    """Whether the channel is connected within `timeout` seconds."""
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout)
    except TimeoutError:
        return False
    return True


async def run_blocking(function: Callable[..., Result], *args: object) -> Result:
    """Runs blocking file I/O on a worker thread, so the event loop goes on serving meanwhile."""
    return await asyncio.to_thread(function, *args)
