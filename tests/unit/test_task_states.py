"""task_states: which status moves go forward, and the phase durations read from a status history."""

from __future__ import annotations

from typing import Any

import pytest

from simplane.server import task_states
from simplane.server.task_states import (
    FAILED,
    FINALIZING,
    KILLED,
    LOST,
    PREPARING,
    QUEUED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    TIMED_OUT,
)

History = list[list[Any]]  # [status, unix time, detail], as task records keep them

ORDER = [SUBMITTED, QUEUED, PREPARING, RUNNING, FINALIZING, SUCCEEDED, FAILED, KILLED, TIMED_OUT, LOST]
# Row: from; column: to, in ORDER. "x" marks a move the server takes, "." one it ignores as stale.
ALLOWED = """
    SUB QUE PRE RUN FIN SUC FAI KIL TIM LOS
SUB  .   x   x   x   x   x   x   x   x   x
QUE  .   .   x   x   x   x   x   x   x   x
PRE  .   .   .   x   x   x   x   x   x   x
RUN  .   .   .   .   x   x   x   x   x   x
FIN  .   .   .   .   .   x   x   x   x   x
SUC  .   .   .   .   .   .   .   .   .   .
FAI  .   .   .   .   .   .   .   .   .   .
KIL  .   .   .   .   .   .   .   .   .   .
TIM  .   .   .   .   .   .   .   .   .   .
LOS  .   .   .   .   .   .   .   .   .   .
"""


def _moves() -> list[tuple[int, int, bool]]:
    rows = ALLOWED.strip().splitlines()[1:]
    assert len(rows) == len(ORDER)
    moves: list[tuple[int, int, bool]] = []
    for current, row in zip(ORDER, rows, strict=True):
        marks = row.split()[1:]
        assert len(marks) == len(ORDER)
        moves.extend((current, new, mark == "x") for new, mark in zip(ORDER, marks, strict=True))
    return moves


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    _moves(),
    ids=[f"{task_states.name(c)}->{task_states.name(n)}" for c, n, _ in _moves()],
)
def test_every_move_between_statuses(current: int, new: int, allowed: bool) -> None:
    assert task_states.advances(current, new) is allowed


def test_terminal_and_on_machine_sets() -> None:
    assert {SUCCEEDED, FAILED, KILLED, TIMED_OUT, LOST} == task_states.TERMINAL
    assert {PREPARING, RUNNING, FINALIZING} == task_states.ON_MACHINE


def test_an_unspecified_status_never_advances_a_task() -> None:
    unspecified = task_states.S.TASK_STATUS_UNSPECIFIED
    assert not any(task_states.advances(current, unspecified) for current in ORDER)


def test_names_drop_the_enum_prefix() -> None:
    assert [task_states.name(s) for s in ORDER] == [
        "SUBMITTED",
        "QUEUED",
        "PREPARING",
        "RUNNING",
        "FINALIZING",
        "SUCCEEDED",
        "FAILED",
        "KILLED",
        "TIMED_OUT",
        "LOST",
    ]


def test_phase_durations_of_a_task_that_went_through_every_phase() -> None:
    history: History = [
        [SUBMITTED, 100.0, ""],
        [QUEUED, 101.0, ""],
        [PREPARING, 103.0, ""],
        [RUNNING, 106.0, ""],
        [FINALIZING, 116.0, ""],
        [SUCCEEDED, 117.5, ""],
    ]
    assert task_states.phase_durations(history, now=1000.0) == {
        "queued": 3.0,
        "preparing": 3.0,
        "computing": 10.0,
        "finalizing": 1.5,
        "total": 17.5,
    }


def test_phase_durations_of_a_running_task_count_up_to_now() -> None:
    history: History = [[SUBMITTED, 100.0, ""], [PREPARING, 102.0, ""], [RUNNING, 104.0, ""]]
    assert task_states.phase_durations(history, now=110.0) == {
        "queued": 2.0,
        "preparing": 2.0,
        "computing": 6.0,
        "finalizing": None,
        "total": 10.0,
    }


def test_phase_durations_of_a_task_killed_while_queued() -> None:
    history: History = [[SUBMITTED, 100.0, ""], [QUEUED, 100.5, ""], [KILLED, 104.0, "killed by alice"]]
    assert task_states.phase_durations(history, now=500.0) == {
        "queued": 4.0,
        "preparing": None,
        "computing": None,
        "finalizing": None,
        "total": 4.0,
    }


def test_phase_durations_of_a_task_that_failed_without_finalizing() -> None:
    history: History = [[SUBMITTED, 0.0, ""], [PREPARING, 1.0, ""], [RUNNING, 2.0, ""], [FAILED, 7.0, "exit 1"]]
    durations = task_states.phase_durations(history, now=100.0)
    assert durations["computing"] == 5.0
    assert durations["finalizing"] is None
    assert durations["total"] == 7.0


def test_phase_durations_take_the_first_entry_of_a_repeated_status() -> None:
    # A task requeued after its machine was lost enters PREPARING twice; the first time counts.
    history: History = [[SUBMITTED, 0.0, ""], [PREPARING, 2.0, ""], [PREPARING, 9.0, "retry"], [RUNNING, 10.0, ""]]
    durations = task_states.phase_durations(history, now=12.0)
    assert durations["queued"] == 2.0
    assert durations["preparing"] == 8.0


def test_phase_durations_are_never_negative_when_the_clock_stepped_back() -> None:
    history: History = [[SUBMITTED, 50.0, ""], [PREPARING, 40.0, ""], [RUNNING, 45.0, ""]]
    durations = task_states.phase_durations(history, now=30.0)
    assert durations == {"queued": 0.0, "preparing": 5.0, "computing": 0.0, "finalizing": None, "total": 0.0}


def test_phase_durations_of_an_empty_history() -> None:
    assert task_states.phase_durations([], now=5.0) == {
        "queued": None,
        "preparing": None,
        "computing": None,
        "finalizing": None,
        "total": 0.0,
    }
