"""task_record: a task's state to and from its table row, and to the API message, clamping what the message
cannot carry."""

from __future__ import annotations

import math

from simplane._api.v1 import task_pb2
from simplane.server import task_states
from simplane.server.store.models import TaskRow
from simplane.server.task_record import MAX_DURATION, MAX_TIME, MIN_TIME, TaskRecord


def record(**fields: object) -> TaskRecord:
    values: dict[str, object] = {
        "id": "t-1",
        "owner": "alice",
        "machine_group": "local",
        "command": ["python", "solve.py"],
        "created_at": 1000.0,
        "updated_at": 1000.0,
    }
    values.update(fields)
    return TaskRecord(**values)  # type: ignore[arg-type]  # test values of the right types


def test_a_record_survives_its_row() -> None:
    task = record(name="solve", project="cfd", env={"A": "1"}, cpus=2, time_to_live=60.0, request_id="r-1")
    task.move(task_states.QUEUED, 1001.0)
    task.move(task_states.RUNNING, 1002.0, "on m1")
    task.exit_code = 3
    again = TaskRecord.from_row(TaskRow(**task.to_row()))
    assert again == task


def test_the_warning_is_not_stored() -> None:
    task = record(warning="its machine is unreachable")
    assert "warning" not in task.to_row()
    assert TaskRecord.from_row(TaskRow(**task.to_row())).warning == ""


def test_the_row_is_a_copy_of_the_record_as_of_now() -> None:
    task = record(env={"A": "1"})
    row = task.to_row()
    task.command.append("--more")
    task.env["B"] = "2"
    task.move(task_states.QUEUED, 1001.0)
    assert (row["command"], row["env"], row["history"]) == (["python", "solve.py"], {"A": "1"}, [])


def test_a_stored_time_to_live_beyond_the_api_is_clamped_when_read() -> None:
    row = TaskRow(**record().to_row())
    row.time_to_live = 1e300
    assert TaskRecord.from_row(row).time_to_live == MAX_DURATION
    row.time_to_live = -5.0
    assert TaskRecord.from_row(row).time_to_live == 0.0
    row.time_to_live = math.nan
    assert TaskRecord.from_row(row).time_to_live == 0.0


def test_move_records_the_status_time_and_detail() -> None:
    task = record()
    task.move(task_states.KILLED, 1005.5, "killed by alice")
    assert (task.status, task.updated_at, task.history) == (
        task_states.KILLED,
        1005.5,
        [[task_states.KILLED, 1005.5, "killed by alice"]],
    )
    assert task.terminal


def test_only_ended_tasks_are_terminal() -> None:
    assert [record(status=status).terminal for status in (task_states.SUBMITTED, task_states.RUNNING)] == [False, False]
    assert all(record(status=status).terminal for status in task_states.TERMINAL)


def test_the_api_message_carries_the_record() -> None:
    task = record(name="solve", env={"A": "1"}, cpus=2, time_to_live=90.5, inputs="case/", revision=7)
    task.history.append([task_states.SUBMITTED, 1000.0, ""])
    task.move(task_states.PREPARING, 1002.0, "on m1")
    task.move(task_states.RUNNING, 1002.25)
    task.move(task_states.SUCCEEDED, 1010.0)
    task.exit_code = 0
    task.output_bytes, task.output_files = 2048, 3
    message = task.to_proto()
    assert (message.id, message.name, list(message.command), dict(message.env)) == (
        "t-1",
        "solve",
        ["python", "solve.py"],
        {"A": "1"},
    )
    assert (message.status, message.cpus, message.inputs, message.revision) == (task_states.SUCCEEDED, 2, "case/", 7)
    assert message.HasField("exit_code") and message.exit_code == 0
    assert message.time_to_live.ToTimedelta().total_seconds() == 90.5
    assert message.update_time.ToNanoseconds() == 1010 * 10**9
    assert [(h.status, h.time.ToNanoseconds(), h.detail) for h in message.history] == [
        (task_states.SUBMITTED, 1000 * 10**9, ""),
        (task_states.PREPARING, 1002 * 10**9, "on m1"),
        (task_states.RUNNING, 1002_250_000_000, ""),
        (task_states.SUCCEEDED, 1010 * 10**9, ""),
    ]
    metrics = message.metrics
    assert (
        metrics.queued.ToNanoseconds(),
        metrics.preparing.ToNanoseconds(),
        metrics.computing.ToNanoseconds(),
        metrics.total.ToNanoseconds(),
    ) == (
        2 * 10**9,
        250_000_000,
        7_750_000_000,
        10 * 10**9,
    )
    assert not metrics.HasField("finalizing")
    assert (metrics.output_bytes, metrics.output_files) == (2048, 3)


def test_an_unset_exit_code_and_time_to_live_stay_unset() -> None:
    message = record().to_proto()
    assert not message.HasField("exit_code")
    assert not message.HasField("time_to_live")


def test_times_outside_what_a_timestamp_holds_are_clamped() -> None:
    assert record(created_at=1e20).to_proto().create_time.seconds == int(MAX_TIME)
    assert record(created_at=-1e20).to_proto().create_time.seconds == int(MIN_TIME)
    assert record(created_at=math.nan).to_proto().create_time.seconds == int(MIN_TIME)
    stamp = record(created_at=1000.999999999999).to_proto().create_time
    assert (stamp.seconds, stamp.nanos) == (1000, 999_999_999)
    task_pb2.Task.FromString(record(created_at=math.inf, updated_at=-math.inf).to_proto().SerializeToString())
