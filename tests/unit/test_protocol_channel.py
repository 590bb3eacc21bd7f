"""simplane._protocol.channel: the options the client and the agent give their channels."""

from __future__ import annotations

from simplane._protocol.channel import channel_options


def test_the_agent_reconnects_from_50_ms_and_pings_without_calls() -> None:
    assert dict(channel_options(first_reconnect_ms=50, ping_without_calls=True)) == {
        "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.min_reconnect_backoff_ms": 50,
        "grpc.max_reconnect_backoff_ms": 1000,
        "grpc.keepalive_time_ms": 20_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.max_pings_without_data": 0,
    }


def test_the_client_reconnects_from_100_ms_with_larger_messages() -> None:
    assert dict(channel_options(first_reconnect_ms=100, max_message_bytes=64 * 1024 * 1024)) == {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.min_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
        "grpc.max_send_message_length": 64 * 1024 * 1024,
        "grpc.max_receive_message_length": 64 * 1024 * 1024,
        "grpc.keepalive_time_ms": 20_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.http2.max_pings_without_data": 0,
    }
