"""simplane._protocol.backoff: delays double up to a cap, jitter only shortens them, reset starts again."""

from __future__ import annotations

from simplane._protocol.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_starts_again() -> None:
    backoff = Backoff(0.1, 2.0, jitter=False)
    assert [backoff.next_delay() for _ in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    backoff.reset()
    assert backoff.next_delay() == 0.1


def test_jitter_keeps_each_delay_between_half_and_the_whole() -> None:
    backoff = Backoff(0.05, 2.0)
    for ceiling in [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]:
        assert ceiling / 2 <= backoff.next_delay() < ceiling
