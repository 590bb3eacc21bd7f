"""The client's own refusals name their field the way the server's do (docs/errors.md)."""

from __future__ import annotations

import pytest

from simplane import InvalidArgument, TaskStatus
from simplane._durations import to_timedelta


@pytest.mark.parametrize(
    ("value", "problem"),
    [("soon", "'soon' is not a duration"), (-1, "must not be negative"), (float("inf"), "finite")],
)
def test_a_bad_duration_names_its_field(value: object, problem: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        to_timedelta(value, "time_to_live")  # type: ignore[arg-type]  # the point is a value of the wrong kind
    assert refused.value.field == "time_to_live"
    assert problem in refused.value.violations[0].description
    assert str(refused.value).startswith("time_to_live: ")


def test_an_unknown_status_names_its_field() -> None:
    with pytest.raises(InvalidArgument) as refused:
        TaskStatus.parse("finished")
    assert refused.value.field == "status"
    assert "expected one of" in str(refused.value)
