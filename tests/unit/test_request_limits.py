"""request_limits: each limit accepts a request at its edge and refuses one just past it, naming the field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from simplane._api.v1 import account_pb2, agent_pb2, machine_group_pb2, storage_pb2, task_pb2
from simplane.server import errors, request_limits
from simplane.server.request_limits import (
    DAY,
    EARLIEST_SECONDS,
    KIB,
    LATEST_SECONDS,
    MAX_ARG_BYTES,
    MAX_COMMAND_BYTES,
    MAX_COMMAND_ITEMS,
    MAX_ENV_BYTES,
    MAX_ENV_VARS,
    MAX_ID_CHARS,
    MAX_ITEMS,
    MAX_PATH_CHARS,
    MAX_PATH_PART_BYTES,
    MAX_SINGLE_UPLOAD,
    MAX_TEXT_CHARS,
)

L = task_pb2.LogStream


def submit(command: list[str] | None = None, **fields: object) -> task_pb2.SubmitTaskRequest:
    return task_pb2.SubmitTaskRequest(command=command or ["run"], **fields)  # type: ignore[arg-type]  # test values


def upload(size: int) -> storage_pb2.UploadFileRequest:
    """An UploadFile request holding a whole file of `size` bytes."""
    return storage_pb2.UploadFileRequest(chunk=storage_pb2.FileChunk(path="a", data=bytes(size), sha256="f" * 64))


def path_of(chars: int, part: int = 100) -> str:
    """A path of `chars` characters whose '/'-separated parts are under `part` characters."""
    whole, rest = divmod(chars, part)
    return ("a" * (part - 1) + "/") * whole + "a" * rest


def refusal(request: Message) -> errors.InvalidArgument:
    with pytest.raises(errors.InvalidArgument) as refused:
        request_limits.check(request)
    return refused.value


@dataclass
class Edge:
    at: Callable[[], Message]  # the largest (or smallest) request accepted
    past: Callable[[], Message]  # one step further: refused
    field: str  # the field the refusal names


EDGES: dict[str, Edge] = {
    "task name": Edge(lambda: submit(name="n" * 256), lambda: submit(name="n" * 257), "name"),
    "project": Edge(lambda: submit(project="p" * 128), lambda: submit(project="p" * 129), "project"),
    "machine group": Edge(
        lambda: submit(machine_group="g" * 128), lambda: submit(machine_group="g" * 129), "machine_group"
    ),
    "request id": Edge(
        lambda: submit(request_id="r" * MAX_ID_CHARS), lambda: submit(request_id="r" * (MAX_ID_CHARS + 1)), "request_id"
    ),
    "inputs path length": Edge(
        lambda: submit(inputs=path_of(MAX_PATH_CHARS)), lambda: submit(inputs=path_of(MAX_PATH_CHARS + 1)), "inputs"
    ),
    "path part bytes": Edge(
        lambda: submit(inputs="dir/" + "é" * (MAX_PATH_PART_BYTES // 2) + "x"),  # 255 bytes in 128 characters
        lambda: submit(inputs="dir/" + "é" * (MAX_PATH_PART_BYTES // 2 + 1)),  # 256 bytes
        "inputs",
    ),
    "command argument": Edge(
        lambda: submit(["run", "a" * MAX_ARG_BYTES]), lambda: submit(["run", "a" * (MAX_ARG_BYTES + 1)]), "command[1]"
    ),
    "command arguments": Edge(
        lambda: submit(["a"] * MAX_COMMAND_ITEMS), lambda: submit(["a"] * (MAX_COMMAND_ITEMS + 1)), "command"
    ),
    "command bytes": Edge(
        lambda: submit(["a" * (MAX_COMMAND_BYTES // 4)] * 4),
        lambda: submit(["a" * (MAX_COMMAND_BYTES // 4)] * 4 + ["b"]),
        "command",
    ),
    "env variables": Edge(
        lambda: submit(env={f"V{i}": "" for i in range(MAX_ENV_VARS)}),
        lambda: submit(env={f"V{i}": "" for i in range(MAX_ENV_VARS + 1)}),
        "env",
    ),
    "env value": Edge(
        lambda: submit(env={"BIG": "v" * MAX_ARG_BYTES}),
        lambda: submit(env={"BIG": "v" * (MAX_ARG_BYTES + 1)}),
        "env['BIG']",
    ),
    "env bytes": Edge(
        # Keys and values count together: 4 keys of 1 byte, 4 values filling the rest.
        lambda: submit(env={k: "v" * (MAX_ENV_BYTES // 4 - 1) for k in "ABCD"}),
        lambda: submit(env={k: "v" * (MAX_ENV_BYTES // 4) for k in "ABCD"}),
        "env",
    ),
    "cpus": Edge(lambda: submit(cpus=4096), lambda: submit(cpus=4097), "cpus"),
    "cpus below zero": Edge(lambda: submit(cpus=0), lambda: submit(cpus=-1), "cpus"),
    "time to live": Edge(
        lambda: submit(time_to_live=Duration(seconds=366 * DAY)),
        lambda: submit(time_to_live=Duration(seconds=366 * DAY, nanos=1)),
        "time_to_live",
    ),
    "negative duration": Edge(
        lambda: submit(time_to_live=Duration(seconds=0, nanos=0)),
        lambda: submit(time_to_live=Duration(seconds=-1)),
        "time_to_live",
    ),
    "grace period": Edge(
        lambda: task_pb2.KillTaskRequest(task_id="t-1", grace_period=Duration(seconds=DAY)),
        lambda: task_pb2.KillTaskRequest(task_id="t-1", grace_period=Duration(seconds=DAY + 1)),
        "grace_period",
    ),
    "duration nanos": Edge(
        lambda: task_pb2.KillTaskRequest(grace_period=Duration(seconds=1, nanos=999_999_999)),
        lambda: task_pb2.KillTaskRequest(grace_period=Duration(seconds=1, nanos=1_000_000_000)),
        "grace_period",
    ),
    "page size": Edge(
        lambda: task_pb2.ListTasksRequest(page_size=1000),
        lambda: task_pb2.ListTasksRequest(page_size=1001),
        "page_size",
    ),
    "negative page size": Edge(
        lambda: task_pb2.ListTasksRequest(page_size=0), lambda: task_pb2.ListTasksRequest(page_size=-1), "page_size"
    ),
    "page token": Edge(
        lambda: task_pb2.ListTasksRequest(page_token="p" * 1024),
        lambda: task_pb2.ListTasksRequest(page_token="p" * 1025),
        "page_token",
    ),
    "query": Edge(
        lambda: task_pb2.ListTasksRequest(query="q" * 256), lambda: task_pb2.ListTasksRequest(query="q" * 257), "query"
    ),
    "statuses": Edge(
        lambda: task_pb2.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_RUNNING] * 16),
        lambda: task_pb2.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_RUNNING] * 17),
        "statuses",
    ),
    "latest timestamp": Edge(
        lambda: task_pb2.ListTasksRequest(created_after=Timestamp(seconds=LATEST_SECONDS, nanos=999_999_999)),
        lambda: task_pb2.ListTasksRequest(created_after=Timestamp(seconds=LATEST_SECONDS + 1)),
        "created_after",
    ),
    "earliest timestamp": Edge(
        lambda: task_pb2.ListTasksRequest(created_before=Timestamp(seconds=EARLIEST_SECONDS)),
        lambda: task_pb2.ListTasksRequest(created_before=Timestamp(seconds=EARLIEST_SECONDS - 1)),
        "created_before",
    ),
    "timestamp nanos": Edge(
        lambda: task_pb2.ListTasksRequest(created_after=Timestamp(seconds=0, nanos=0)),
        lambda: task_pb2.ListTasksRequest(created_after=Timestamp(seconds=0, nanos=-1)),
        "created_after",
    ),
    "watched tasks": Edge(
        lambda: task_pb2.WatchTasksRequest(task_ids=["t-1"] * 1000),
        lambda: task_pb2.WatchTasksRequest(task_ids=["t-1"] * 1001),
        "task_ids",
    ),
    "watched task id": Edge(
        lambda: task_pb2.WatchTasksRequest(task_ids=["t-1", "t" * MAX_ID_CHARS]),
        lambda: task_pb2.WatchTasksRequest(task_ids=["t-1", "t" * (MAX_ID_CHARS + 1)]),
        "task_ids[1]",
    ),
    "snapshot ended limit": Edge(
        lambda: task_pb2.WatchTasksRequest(snapshot_ended_limit=10_000),
        lambda: task_pb2.WatchTasksRequest(snapshot_ended_limit=10_001),
        "snapshot_ended_limit",
    ),
    "log cursors": Edge(
        lambda: task_pb2.TailLogsRequest(cursors=[task_pb2.LogCursor(stream=L.LOG_STREAM_STDOUT)] * 3),
        lambda: task_pb2.TailLogsRequest(cursors=[task_pb2.LogCursor(stream=L.LOG_STREAM_STDOUT)] * 4),
        "cursors",
    ),
    "enum inside a repeated message": Edge(
        lambda: task_pb2.TailLogsRequest(cursors=[task_pb2.LogCursor(stream=L.LOG_STREAM_FILE)]),
        lambda: task_pb2.TailLogsRequest(cursors=[task_pb2.LogCursor(stream=99)]),  # type: ignore[arg-type]  # not a LogStream
        "cursors[0].stream",
    ),
    "file chunk checksum": Edge(
        lambda: storage_pb2.FileChunk(path="a", sha256="f" * 64),
        lambda: storage_pb2.FileChunk(path="a", sha256="f" * 65),
        "sha256",
    ),
    "single upload size": Edge(
        lambda: upload(MAX_SINGLE_UPLOAD),
        lambda: upload(MAX_SINGLE_UPLOAD + 1),
        "chunk.data",
    ),
    "api key description": Edge(
        lambda: account_pb2.CreateApiKeyRequest(description="d" * 256),
        lambda: account_pb2.CreateApiKeyRequest(description="d" * 257),
        "description",
    ),
    "any other string": Edge(
        lambda: machine_group_pb2.CreateMachineGroupRequest(machine_type="m" * MAX_TEXT_CHARS),
        lambda: machine_group_pb2.CreateMachineGroupRequest(machine_type="m" * (MAX_TEXT_CHARS + 1)),
        "machine_type",
    ),
    "any other repeated field": Edge(
        lambda: agent_pb2.AgentHello(held_tasks=[agent_pb2.HeldTask(task_id="t-1")] * MAX_ITEMS),
        lambda: agent_pb2.AgentHello(held_tasks=[agent_pb2.HeldTask(task_id="t-1")] * (MAX_ITEMS + 1)),
        "held_tasks",
    ),
    "a string inside a repeated message": Edge(
        lambda: agent_pb2.AgentHello(held_tasks=[agent_pb2.HeldTask(), agent_pb2.HeldTask(task_id="t" * MAX_ID_CHARS)]),
        lambda: agent_pb2.AgentHello(held_tasks=[agent_pb2.HeldTask(), agent_pb2.HeldTask(task_id="t" * 129)]),
        "held_tasks[1].task_id",
    ),
    "agent slots": Edge(lambda: agent_pb2.AgentHello(slots=4096), lambda: agent_pb2.AgentHello(slots=4097), "slots"),
    "a message inside a message": Edge(
        lambda: agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(agent_id="a" * MAX_ID_CHARS)),
        lambda: agent_pb2.ConnectRequest(hello=agent_pb2.AgentHello(agent_id="a" * (MAX_ID_CHARS + 1))),
        "hello.agent_id",
    ),
    "agent error text": Edge(
        lambda: agent_pb2.TaskUpdate(error="e" * (256 * KIB)),
        lambda: agent_pb2.TaskUpdate(error="e" * (256 * KIB + 1)),
        "error",
    ),
}


@pytest.mark.parametrize("edge", EDGES.values(), ids=EDGES.keys())
def test_a_limit_accepts_its_edge_and_refuses_one_past_it(edge: Edge) -> None:
    request_limits.check(edge.at())
    assert refusal(edge.past()).field == edge.field


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (submit(name="a\0b"), "name"),
        (submit(["run", "x\0"]), "command[1]"),
        (submit(env={"K": "\0"}), "env['K']"),
        (submit(env={"K\0": "v"}), "env['K\\x00']"),
        (storage_pb2.FileChunk(path="dir/\0"), "path"),
    ],
    ids=["field", "list item", "map value", "map key", "path"],
)
def test_no_string_holds_a_nul_character(request_: Message, field: str) -> None:
    refused = refusal(request_)
    assert (refused.field, refused.message) == (field, f"{field}: must not contain NUL characters")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (task_pb2.SubmitTaskRequest(), "command"),
        (submit([""]), "command"),
        (submit(env={"": "v"}), "env"),
        (submit(env={"A=B": "v"}), "env"),
        (task_pb2.ListTasksRequest(statuses=[task_pb2.TASK_STATUS_UNSPECIFIED]), "statuses"),
        (task_pb2.ListTasksRequest(statuses=[99]), "statuses[0]"),  # type: ignore[list-item]  # not a TaskStatus
        (storage_pb2.UploadFileRequest(chunk=storage_pb2.FileChunk(path="a")), "chunk.sha256"),
        (
            storage_pb2.UploadFileRequest(chunk=storage_pb2.FileChunk(path="a", offset=1, sha256="f" * 64)),
            "chunk.offset",
        ),
    ],
    ids=[
        "no command",
        "no program",
        "empty variable name",
        "= in a variable name",
        "unspecified status",
        "unknown status",
        "upload without its checksum",
        "upload of part of a file",
    ],
)
def test_what_a_bound_cannot_say(request_: Message, field: str) -> None:
    assert refusal(request_).field == field


def test_the_refusal_says_what_was_wrong() -> None:
    assert refusal(submit(name="n" * 300)).message == "name: holds 300 characters, more than the 256 allowed"
    assert refusal(submit(cpus=5000)).message == "cpus: must be between 0 and 4096, got 5000"
    assert refusal(submit(["a"] * 4097)).message == "command: holds 4097 items, more than the 4096 allowed"


def test_a_valid_submit_passes() -> None:
    request_limits.check(
        submit(
            ["python", "solve.py", "--steps", "100"],
            name="solve",
            project="cfd",
            machine_group="local",
            time_to_live=Duration(seconds=600),
            cpus=2,
            env={"OMP_NUM_THREADS": "2"},
            inputs="cases/one",
            request_id="r-1",
        )
    )


def test_check_text() -> None:
    request_limits.check_text("hostname", "h" * 10, chars=10)
    with pytest.raises(errors.InvalidArgument) as refused:
        request_limits.check_text("hostname", "h" * 11, chars=10)
    assert refused.value.field == "hostname"


def test_every_named_limit_is_a_field_of_the_api() -> None:
    """A typo in FIELD_LIMITS would leave the field at the defaults without a word."""
    pool = descriptor_pool.Default()
    missing = []
    for full_name in request_limits.FIELD_LIMITS:
        try:
            pool.FindFieldByName(full_name)
        except KeyError:
            missing.append(full_name)
    assert missing == []
    for message in request_limits.MESSAGE_CHECKS:
        pool.FindMessageTypeByName(message)


@dataclass
class NamedEdge:
    build: Callable[[int], Message]  # a request whose bounded field holds a value of size n
    edge: int  # accepted
    past: int  # refused
    field: str  # named in the refusal


def _setting(
    cls: type[Message], base: dict[str, object], name: str, value: Callable[[int], object]
) -> Callable[[int], Message]:
    """Builds cls(**base) with the field `name` set to value(n)."""
    return lambda n: cls(**base, **{name: value(n)})


def _repeated(item: object) -> Callable[[int], object]:
    return lambda n: [item] * n


def _named_edges() -> dict[str, NamedEdge]:
    """One case per bound of each field in FIELD_LIMITS, built from its descriptor: the field's own limit is applied
    to it (a misspelt entry, or a walker that skipped a kind of field, would fail here)."""
    pool = descriptor_pool.Default()
    cases: dict[str, NamedEdge] = {}
    for full_name, limit in request_limits.FIELD_LIMITS.items():
        field = pool.FindFieldByName(full_name)
        assert field.containing_type is not None
        message_class = message_factory.GetMessageClass(field.containing_type)
        # What MESSAGE_CHECKS want whatever else the request holds: a submit names a program, an upload is whole.
        base: dict[str, object] = {}
        if message_class is task_pb2.SubmitTaskRequest and field.name != "command":
            base = {"command": ["run"]}
        elif message_class is storage_pb2.UploadFileRequest:
            base = {"chunk": storage_pb2.FileChunk(path="a", sha256="f" * 64)}
        label, name = full_name.removeprefix("simplane.v1."), field.name

        def setting(
            value: Callable[[int], object],
            message_class: type[Message] = message_class,
            base: dict[str, object] = base,
            name: str = name,
        ) -> Callable[[int], Message]:
            return _setting(message_class, base, name, value)

        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entries = setting(lambda n: {f"K{i}": "" for i in range(n)})
            cases[f"{label} entries"] = NamedEdge(entries, limit.items, limit.items + 1, name)
            cases[f"{label} value"] = NamedEdge(
                setting(lambda n: {"K": "v" * n}), limit.chars, limit.chars + 1, f"{name}['K']"
            )
        elif field.is_repeated:
            item: object
            if field.type == FieldDescriptor.TYPE_STRING:
                item = "a"
                cases[f"{label} item"] = NamedEdge(
                    setting(lambda n: ["a" * n]), limit.chars, limit.chars + 1, f"{name}[0]"
                )
            elif field.enum_type is not None:
                item = field.enum_type.values[-1].number
            else:
                assert field.message_type is not None
                item = message_factory.GetMessageClass(field.message_type)()
            if limit.items <= 100_000:  # FileListing.files: a million messages would take seconds to build
                cases[f"{label} items"] = NamedEdge(setting(_repeated(item)), limit.items, limit.items + 1, name)
        elif field.type == FieldDescriptor.TYPE_STRING:
            text = path_of if limit.path else (lambda n: "a" * n)
            cases[label] = NamedEdge(setting(text), limit.chars, limit.chars + 1, name)
        elif field.message_type is not None and field.message_type.full_name == "google.protobuf.Duration":
            cases[label] = NamedEdge(setting(lambda n: Duration(seconds=n)), limit.seconds, limit.seconds + 1, name)
        else:
            assert limit.low is not None and limit.high is not None, f"{full_name}: a number without bounds"
            number = setting(lambda n: n)
            cases[f"{label} high"] = NamedEdge(number, limit.high, limit.high + 1, name)
            cases[f"{label} low"] = NamedEdge(number, limit.low + 1, limit.low - 1, name)
    return cases


NAMED_EDGES = _named_edges()


@pytest.mark.parametrize("edge", NAMED_EDGES.values(), ids=NAMED_EDGES.keys())
def test_every_named_limit_holds_at_its_edge(edge: NamedEdge) -> None:
    request_limits.check(edge.build(edge.edge))
    assert refusal(edge.build(edge.past)).field == edge.field
