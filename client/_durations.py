"""Durations as people write them: "90s", "10m", "1h30m", "1.5h", "250ms", a number of seconds, a timedelta."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from simplane.errors import InvalidArgument

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")
_WHOLE = re.compile(rf"(?:{_PART.pattern})+")

Duration = timedelta | float | int | str


def to_timedelta(value: Duration, field: str) -> timedelta:
    """Reads a non-negative duration; InvalidArgument names `field` when the value makes no sense."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = _from_seconds(float(value), value, field)
    elif isinstance(value, str):
        result = _from_seconds(_parse_seconds(value, field), value, field)
    else:
        raise InvalidArgument.of_field(field, f"expected a duration, got {value!r}")
    if result < timedelta(0):
        raise InvalidArgument.of_field(field, f"must not be negative, got {value!r}")
    return result


def _parse_seconds(text: str, field: str) -> float:
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    if not _WHOLE.fullmatch(text):
        raise InvalidArgument.of_field(
            field, f'{text!r} is not a duration; write e.g. "90s", "10m", "1h30m" or a number of seconds'
        )
    return sum(float(amount) * _UNIT_SECONDS[unit] for amount, unit in _PART.findall(text))


def _from_seconds(seconds: float, value: Duration, field: str) -> timedelta:
    if not math.isfinite(seconds):
        raise InvalidArgument.of_field(field, f"expected a finite duration, got {value!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidArgument.of_field(field, f"{value!r} is too long") from None
