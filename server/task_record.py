"""A task's state as the server holds it, and its conversions to the API message and the table row.

Reading never raises on a stored value: times and durations outside what the API messages can carry are
clamped where they are read.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from simplane._api.v1 import task_pb2
from simplane.server import task_states


@dataclass
class TaskRecord:
    id: str
    owner: str
    machine_group: str
    command: list[str]
    created_at: float
    updated_at: float
    status: int = task_states.SUBMITTED
    name: str = ""
    project: str = ""
    env: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    exit_code: int | None = None
    error: str = ""
    machine_id: str = ""
    time_to_live: float = 0.0
    cpus: int = 1
    inputs: str = ""
    history: list[list] = field(default_factory=list)  # [status, unix time, detail]
    input_bytes: int = 0
    input_files: int = 0
    output_bytes: int = 0
    output_files: int = 0
    revision: int = 0
    update_seq: int = 0  # last TaskUpdate seq stored from the agent
    stdout_size: int = -1  # final sizes the agent reported; -1 until it ended
    stderr_size: int = -1
    request_id: str | None = None  # the client's idempotency key for the submit that made the task
    # What holds the active task back now (its machine is unreachable, ...); kept in memory only, not stored.
    warning: str = field(default="", metadata={"stored": False})

    @classmethod
    def from_row(cls, row: Any) -> TaskRecord:
        task = cls(**{name: getattr(row, name) for name in _FIELD_NAMES})
        task.time_to_live = _clamp(task.time_to_live, 0.0, MAX_DURATION)
        return task

    def to_row(self) -> dict[str, Any]:
        """The columns, as of now: lists are copied, since the record keeps changing while a commit runs."""
        row = {name: getattr(self, name) for name in _FIELD_NAMES}
        row["command"] = list(self.command)
        row["env"] = dict(self.env)
        row["history"] = list(self.history)
        return row

    def move(self, status: int, at: float, detail: str = "") -> None:
        self.status = status
        self.updated_at = at
        self.history.append([status, at, detail])

    @property
    def terminal(self) -> bool:
        return self.status in task_states.TERMINAL

    def to_proto(self) -> task_pb2.Task:
        task = task_pb2.Task(
            id=self.id,
            name=self.name,
            project=self.project,
            owner=self.owner,
            command=self.command,
            machine_group=self.machine_group,
            status=task_pb2.TaskStatus.ValueType(self.status),
            attempt=self.attempt,
            error=self.error,
            machine_id=self.machine_id,
            create_time=_timestamp(self.created_at),
            update_time=_timestamp(self.updated_at),
            cpus=self.cpus,
            env=self.env,
            inputs=self.inputs,
            revision=self.revision,
            warning=self.warning,
            history=[
                task_pb2.StatusTransition(status=status, time=_timestamp(at), detail=detail)
                for status, at, detail in self.history
            ],
        )
        if self.exit_code is not None:
            task.exit_code = self.exit_code
        if self.time_to_live:
            task.time_to_live.CopyFrom(_duration(self.time_to_live))
        metrics = task.metrics
        for phase, seconds in task_states.phase_durations(self.history, time.time()).items():
            if seconds is not None:
                getattr(metrics, phase).CopyFrom(_duration(seconds))
        metrics.input_bytes = self.input_bytes
        metrics.input_files = self.input_files
        metrics.output_bytes = self.output_bytes
        metrics.output_files = self.output_files
        return task


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TaskRecord) if f.metadata.get("stored", True))

# The ranges google.protobuf documents for Timestamp (years 1 to 9999) and Duration (about 10,000 years).
MIN_TIME = -62_135_596_800.0
MAX_TIME = 253_402_300_799.0
MAX_DURATION = 315_576_000_000.0


def _clamp(value: float, low: float, high: float) -> float:
    """value within [low, high]; NaN becomes low."""
    return low if math.isnan(value) else min(max(value, low), high)


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    seconds = _clamp(seconds, MIN_TIME, MAX_TIME)
    whole = math.floor(seconds)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=min(int((seconds - whole) * 1e9), 999_999_999))


def _duration(seconds: float) -> duration_pb2.Duration:
    seconds = _clamp(seconds, -MAX_DURATION, MAX_DURATION)
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
