"""Bad input gets the right status code and a message naming the field or id; the server keeps serving.

An INVALID_ARGUMENT names its field in the status details (google.rpc.BadRequest), which the client exposes as
InvalidArgument.field and .violations, and the CLI shows. The gRPC-web path carries the same details to the
browser (test_grpc_web.py, and the launch form's highlighting in test_console.py).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from programs import SLEEP_60

import simplane
from simplane._api.v1 import machine_group_pb2, machine_group_pb2_grpc, task_pb2, task_pb2_grpc
from simplane.errors import FieldViolation

UNKNOWN_TASK = "t-00000000000000000000000000"
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


def test_client_raises_typed_errors_with_the_servers_message(cluster) -> None:
    client = cluster.client()
    with pytest.raises(simplane.InvalidArgument, match="command"):
        client.tasks.submit([])
    with pytest.raises(simplane.InvalidArgument, match="cpus"):
        client.tasks.submit(["true"], cpus=-1)
    with pytest.raises(simplane.NotFound, match="no-such-group"):
        client.tasks.submit(["true"], machine_group="no-such-group")
    with pytest.raises(simplane.NotFound, match=UNKNOWN_TASK):
        client.tasks.get(UNKNOWN_TASK).info()
    with pytest.raises(simplane.NotFound, match=UNKNOWN_TASK):
        client.tasks.get(UNKNOWN_TASK).kill()

    ended = client.tasks.submit(["true"])
    assert ended.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    with pytest.raises(simplane.FailedPrecondition, match=ended.id):
        ended.kill()
    assert issubclass(simplane.NotFound, simplane.SimplaneError)

    # Still serving after every one of them.
    assert client.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED


def test_raw_calls_get_the_right_status_code(cluster) -> None:
    client = cluster.client()
    ended = client.tasks.submit(["true"])
    assert ended.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    tasks = cluster.stub(task_pb2_grpc.TaskServiceStub)
    groups = cluster.stub(machine_group_pb2_grpc.MachineGroupServiceStub)
    meta = cluster.metadata()

    def submit(**fields):
        return lambda: tasks.SubmitTask(task_pb2.SubmitTaskRequest(**fields), metadata=meta, timeout=10)

    def list_tasks(**fields):
        return lambda: tasks.ListTasks(task_pb2.ListTasksRequest(**fields), metadata=meta, timeout=10)

    def tail(**fields):
        return lambda: list(tasks.TailLogs(task_pb2.TailLogsRequest(**fields), metadata=meta, timeout=10))

    file_cursor = [task_pb2.LogCursor(stream=task_pb2.LOG_STREAM_FILE)]
    stdout_twice = [task_pb2.LogCursor(stream=task_pb2.LOG_STREAM_STDOUT, offset=offset) for offset in (0, 3)]
    stderr_twice = [
        task_pb2.LogCursor(stream=task_pb2.LOG_STREAM_STDOUT),
        *(task_pb2.LogCursor(stream=task_pb2.LOG_STREAM_STDERR) for _ in range(2)),
    ]
    cases = {
        "empty command": (submit(command=[]), INVALID, "command"),
        "negative cpus": (submit(command=["true"], cpus=-2), INVALID, "cpus"),
        "negative time to live": (submit(command=["true"], time_to_live=Duration(seconds=-1)), INVALID, "time_to_live"),
        "unknown machine group": (submit(command=["true"], machine_group="no-such-group"), NOT_FOUND, "no-such-group"),
        "unknown task": (
            lambda: tasks.GetTask(task_pb2.GetTaskRequest(task_id=UNKNOWN_TASK), metadata=meta, timeout=10),
            NOT_FOUND,
            UNKNOWN_TASK,
        ),
        "unknown status": (list_tasks(statuses=[99]), INVALID, "status"),
        "negative page size": (list_tasks(page_size=-1), INVALID, "page_size"),
        "bad page token": (list_tasks(page_token="not-a-token"), INVALID, "page_token"),
        "kill unknown task": (
            lambda: tasks.KillTask(task_pb2.KillTaskRequest(task_id=UNKNOWN_TASK), metadata=meta, timeout=10),
            NOT_FOUND,
            UNKNOWN_TASK,
        ),
        "kill ended task": (
            lambda: tasks.KillTask(task_pb2.KillTaskRequest(task_id=ended.id), metadata=meta, timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION,
            ended.id,
        ),
        "files of unknown task": (
            lambda: tasks.ListTaskFiles(task_pb2.ListTaskFilesRequest(task_id=UNKNOWN_TASK), metadata=meta, timeout=10),
            NOT_FOUND,
            UNKNOWN_TASK,
        ),
        "logs of unknown task": (tail(task_id=UNKNOWN_TASK), NOT_FOUND, UNKNOWN_TASK),
        "negative tail lines": (tail(task_id=ended.id, tail_lines=-1), INVALID, "tail_lines"),
        "file cursor without a file": (tail(task_id=ended.id, cursors=file_cursor), INVALID, "file"),
        "stdout cursor twice": (tail(task_id=ended.id, cursors=stdout_twice), INVALID, "cursors"),
        "stderr cursor twice": (tail(task_id=ended.id, cursors=stderr_twice, follow=True), INVALID, "cursors"),
        "file outside the working dir": (
            tail(task_id=ended.id, cursors=file_cursor, file="../../../etc/passwd"),
            INVALID,
            "file",
        ),
        "negative revision": (
            lambda: next(tasks.WatchTasks(task_pb2.WatchTasksRequest(since_revision=-1), metadata=meta, timeout=10)),
            INVALID,
            "since_revision",
        ),
        "unknown machine group lookup": (
            lambda: groups.GetMachineGroup(
                machine_group_pb2.GetMachineGroupRequest(name="no-such-group"), metadata=meta, timeout=10
            ),
            NOT_FOUND,
            "no-such-group",
        ),
    }
    wrong: dict[str, object] = {}
    for case, (call, code, named) in cases.items():
        try:
            call()
        except grpc.RpcError as error:
            if error.code() != code or named not in (error.details() or ""):
                wrong[case] = (error.code(), error.details())
        else:
            wrong[case] = "succeeded"
        # The server keeps serving after each bad call.
        tasks.GetTask(task_pb2.GetTaskRequest(task_id=ended.id), metadata=meta, timeout=10)
    assert wrong == {}


def test_submits_past_the_active_task_limit_are_resource_exhausted(cluster_factory) -> None:
    cluster = cluster_factory(agents=0, env={"SIMPLANE_MAX_ACTIVE_TASKS": "2"})  # no agent: tasks stay queued
    client = cluster.client()
    queued = [client.tasks.submit(SLEEP_60) for _ in range(2)]
    with pytest.raises(simplane.ResourceExhausted) as raised:
        client.tasks.submit(SLEEP_60)
    assert re.search(r"\b2\b", raised.value.message) and "active" in raised.value.message, raised.value.message

    # The server keeps serving, and a slot freed by an ended task can be used again.
    assert [task.info().status for task in queued] == [simplane.TaskStatus.QUEUED] * 2
    queued[0].kill()
    assert queued[0].wait(timeout=30) == simplane.TaskStatus.KILLED
    assert client.tasks.submit(SLEEP_60).info().status == simplane.TaskStatus.QUEUED


# Requests the server refuses, each with the one field it names and what it says about it.
INVALID_SUBMITS: dict[str, tuple[dict[str, Any], str, str]] = {
    "no program": (dict(command=[""]), "command", "must name a program to run"),
    "too many cpus": (dict(command=["true"], cpus=5000), "cpus", "must be between 0 and 4096, got 5000"),
    "NUL in an argument": (dict(command=["true", "a", "b\0"]), "command[2]", "must not contain NUL characters"),
    "long name": (dict(command=["true"], name="n" * 300), "name", "holds 300 characters, more than the 256 allowed"),
    "bad variable name": (dict(command=["true"], env={"": "x"}), "env", "invalid variable name ''"),
    "time to live past the limit": (
        dict(command=["true"], time_to_live="400d"),
        "time_to_live",
        "must be at most 31622400 s, got 34560000 s",
    ),
}


def test_invalid_arguments_carry_their_field_in_the_status_details(cluster) -> None:
    client = cluster.client()
    seen = {}
    for case, (arguments, _, _) in INVALID_SUBMITS.items():
        with pytest.raises(simplane.InvalidArgument) as raised:
            client.tasks.submit(**arguments)
        seen[case] = (raised.value.field, raised.value.violations)
    assert seen == {
        case: (field, (FieldViolation(field, problem),)) for case, (_, field, problem) in INVALID_SUBMITS.items()
    }

    # The field comes from the details, not the message: the raw status carries it as a BadRequest.
    tasks = cluster.stub(task_pb2_grpc.TaskServiceStub)
    with pytest.raises(grpc.RpcError) as refused:
        tasks.SubmitTask(task_pb2.SubmitTaskRequest(command=["true"], cpus=-2), metadata=cluster.metadata(), timeout=10)
    assert isinstance(refused.value, grpc.Call)
    status = rpc_status.from_call(refused.value)
    assert (status.code, status.message) == (INVALID.value[0], "cpus: must be between 0 and 4096, got -2")
    [detail] = status.details
    bad_request = error_details_pb2.BadRequest()
    assert detail.Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("cpus", "must be between 0 and 4096, got -2")
    ]

    # Streams too, and the asynchronous client.
    ended = client.tasks.submit(["true"])
    assert ended.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    with pytest.raises(grpc.RpcError) as refused_stream:
        list(
            tasks.TailLogs(
                task_pb2.TailLogsRequest(task_id=ended.id, tail_lines=-1), metadata=cluster.metadata(), timeout=10
            )
        )
    translated = simplane.errors.translate_rpc_error(refused_stream.value)
    assert isinstance(translated, simplane.InvalidArgument)
    assert translated.field == "tail_lines"

    async def submit_async() -> simplane.InvalidArgument:
        async with simplane.AsyncClient(address=cluster.address, api_key=cluster.api_key) as async_client:
            with pytest.raises(simplane.InvalidArgument) as raised:
                await async_client.tasks.submit(["true"], cpus=5000)
            return raised.value

    assert asyncio.run(submit_async()).violations == (FieldViolation("cpus", "must be between 0 and 4096, got 5000"),)

    # The client's own checks, made before sending, name their field the same way.
    with pytest.raises(simplane.InvalidArgument) as raised:
        next(client.tasks.list(page_size=0))
    assert raised.value.violations == (FieldViolation("page_size", "must be positive, got 0"),)


def test_the_cli_shows_the_field_the_server_named(cluster) -> None:
    cases = {
        "too many cpus": (["run", "--cpus", "5000", "--", "true"], "cpus: must be between 0 and 4096, got 5000"),
        "long name": (
            ["run", "--name", "n" * 300, "--", "true"],
            "name: holds 300 characters, more than the 256 allowed",
        ),
        "empty program": (["run", "--", ""], "command: must name a program to run"),
        "time to live past the limit": (
            ["run", "--time-to-live", "400d", "--", "true"],
            "time_to_live: must be at most 31622400 s, got 34560000 s",
        ),
    }
    shown = {}
    for case, (arguments, _) in cases.items():
        result = cluster.run_cli(*arguments)
        shown[case] = (result.returncode, result.stderr.strip())
    assert shown == {case: (1, f"error: {line}") for case, (_, line) in cases.items()}
