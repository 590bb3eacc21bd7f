"""The client's durations: what people write ("90s", "1h30m", 2.5, a timedelta), and what they must not."""

from __future__ import annotations

from datetime import timedelta

import pytest

from simplane._durations import Duration, to_timedelta
from simplane.errors import InvalidArgument


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("2d", timedelta(days=2)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        (".5s", timedelta(milliseconds=500)),
        ("5.s", timedelta(seconds=5)),
        (" 10M ", timedelta(minutes=10)),
        ("12.5", timedelta(seconds=12.5)),
        ("0", timedelta(0)),
        (30, timedelta(seconds=30)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(minutes=3), timedelta(minutes=3)),
    ],
)
def test_durations_people_write(value: Duration, expected: timedelta) -> None:
    assert to_timedelta(value, "time_to_live") == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "abc",
        "10x",
        "1h 30m",
        "h",
        "-5s",
        "1e400",
        "nan",
        "inf",
        -1,
        -0.5,
        float("nan"),
        float("inf"),
        True,
        1e300,
        timedelta(seconds=-1),
        None,
    ],
    ids=repr,
)
def test_nonsense_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidArgument) as refused:
        to_timedelta(value, "grace_period")  # type: ignore[arg-type]  # also values of the wrong type
    assert str(refused.value).startswith("grace_period")
    assert isinstance(refused.value, ValueError)
