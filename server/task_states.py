"""Task statuses, the moves between them, and the metrics derived from a task's status history."""

from __future__ import annotations

from simplane._api.v1 import task_pb2

S = task_pb2.TaskStatus
SUBMITTED = S.TASK_STATUS_SUBMITTED
QUEUED = S.TASK_STATUS_QUEUED
PREPARING = S.TASK_STATUS_PREPARING
RUNNING = S.TASK_STATUS_RUNNING
FINALIZING = S.TASK_STATUS_FINALIZING
SUCCEEDED = S.TASK_STATUS_SUCCEEDED
FAILED = S.TASK_STATUS_FAILED
KILLED = S.TASK_STATUS_KILLED
TIMED_OUT = S.TASK_STATUS_TIMED_OUT
LOST = S.TASK_STATUS_LOST

TERMINAL = frozenset({SUCCEEDED, FAILED, KILLED, TIMED_OUT, LOST})
ON_MACHINE = frozenset({PREPARING, RUNNING, FINALIZING})

# The order statuses advance in; an update that would go backwards is stale and ignored.
_RANK: dict[int, int] = {SUBMITTED: 0, QUEUED: 1, PREPARING: 2, RUNNING: 3, FINALIZING: 4}


def name(status: int) -> str:
    return S.Name(S.ValueType(status)).removeprefix("TASK_STATUS_")


def advances(current: int, new: int) -> bool:
    """Whether moving from current to new goes forward (terminal statuses end everything)."""
    if current in TERMINAL:
        return False
    if new in TERMINAL:
        return True
    return _RANK.get(new, -1) > _RANK.get(current, -1)


def phase_durations(history: list[list], now: float) -> dict[str, float | None]:
    """Seconds spent queued, preparing, computing, finalizing and in total, from [status, time, detail] entries."""
    first: dict[int, float] = {}
    for status, at, _detail in history:
        first.setdefault(status, at)
    end = next((at for status, at, _ in history if status in TERMINAL), None)

    def span(start_status: int, stop_statuses: tuple[int, ...]) -> float | None:
        start = first.get(start_status)
        if start is None:
            return None
        stops = [first[s] for s in stop_statuses if s in first]
        stop = min(stops) if stops else (end if end is not None else now)
        return max(0.0, stop - start)

    after_running = (FINALIZING, *TERMINAL)
    created = history[0][1] if history else now
    return {
        "queued": span(SUBMITTED, (PREPARING, *TERMINAL)),
        "preparing": span(PREPARING, (RUNNING, *after_running)),
        "computing": span(RUNNING, after_running),
        "finalizing": span(FINALIZING, tuple(TERMINAL)),
        "total": max(0.0, (end if end is not None else now) - created),
    }
