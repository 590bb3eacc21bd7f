"""Task ids: "t-" and a ULID in lowercase Crockford base32, so ids sort by creation time."""

from __future__ import annotations

import os
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_last = (0, 0)


def new_task_id() -> str:
    """Monotonic within this process even for ids made in the same millisecond."""
    global _last
    millis = time.time_ns() // 1_000_000
    last_millis, last_random = _last
    if millis <= last_millis:
        millis, random = last_millis, last_random + 1
    else:
        random = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to count up
    _last = (millis, random)
    value = (millis << 80) | random
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "t-" + "".join(reversed(chars))
