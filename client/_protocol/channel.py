"""gRPC channel settings for the long-lived channels of the client and the agent."""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest message the client and the server send and accept, both ways (gRPC's default is 4 MiB)."""


def message_size_options(limit: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """gRPC's send and receive limits, for a channel or a server."""
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def channel_options(
    *, first_reconnect_ms: int, max_message_bytes: int | None = None, ping_without_calls: bool = False
) -> list[tuple[str, int]]:
    """Options for `grpc.insecure_channel` / `grpc.aio.insecure_channel`.

    A lost connection is tried again from `first_reconnect_ms`, doubling to 1 s, so a restarted server is found
    within a second instead of after gRPC's default of 1 s growing to 120 s. A quiet connection is pinged every
    20 s, so a dead one is noticed (and a stream over it resumes) within half a minute; `ping_without_calls`
    pings even when no call is open. `max_message_bytes` raises gRPC's 4 MiB message limit both ways.
    """
    options = [
        ("grpc.initial_reconnect_backoff_ms", first_reconnect_ms),
        ("grpc.min_reconnect_backoff_ms", first_reconnect_ms),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if max_message_bytes is not None:
        options += message_size_options(max_message_bytes)
    if ping_without_calls:
        options.append(("grpc.keepalive_permit_without_calls", 1))
    return options
