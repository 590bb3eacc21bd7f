"""Hostile input: every RPC of every service, fed random bytes and edge values, answers a status that says what
was wrong (never UNKNOWN or INTERNAL, never a traceback in the log), and the server then still runs everyone's
tasks.

The RPCs and their request types are read from the service descriptors, so an RPC added later is covered here
without a change; the edge values are made per field from the request's descriptor, starting from a valid
request where one is known (VALID_BASES), so that the edge value is what the server has to judge.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from types import ModuleType

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor, MethodDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from programs import SLEEP_60
from waiting import eventually

import simplane
from simplane._api.v1 import account_pb2, agent_pb2, agent_pb2_grpc, machine_group_pb2, storage_pb2, task_pb2

MODULES = (task_pb2, storage_pb2, account_pb2, machine_group_pb2, agent_pb2)
METHODS: list[MethodDescriptor] = [
    method
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}
INVALID = grpc.StatusCode.INVALID_ARGUMENT
RANDOM_SIZES = (0, 1, 7, 100, 4096, 1 << 20)
MEGABYTE_TEXT = "x" * (1 << 20)
HUGE_COUNT = 100_000
INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (2**32 - 1,),
    FieldDescriptor.TYPE_UINT64: (2**64 - 1,),
}
# What a repeated field is filled with, HUGE_COUNT times: its count is the edge, not its values.
SMALL_VALUES = {
    FieldDescriptor.TYPE_STRING: "x",
    FieldDescriptor.TYPE_INT32: 1,
    FieldDescriptor.TYPE_INT64: 1,
    FieldDescriptor.TYPE_UINT32: 1,
    FieldDescriptor.TYPE_ENUM: 1,
    FieldDescriptor.TYPE_DOUBLE: 1.0,
    FieldDescriptor.TYPE_BOOL: True,
}
TIME_EDGES = (
    ("max", {"seconds": 2**63 - 1}),
    ("min", {"seconds": -(2**63)}),
    ("negative", {"seconds": -1}),
    ("bad-nanos", {"seconds": 1, "nanos": 2**31 - 1}),
)
CALL_TIMEOUT = 30
STREAM_READS = 3  # responses read from a server stream before it is cancelled (a watch never ends by itself)

# Called with the message to change. Not Callable[[Message], None]: the setters are lambdas binding loop values as
# defaults, whose type mypy cannot infer against a fixed signature.
Setter = Callable[..., None]


def test_every_rpc_survives_random_bytes_and_edge_values(cluster) -> None:
    admin = cluster.client()
    mallory_key = cluster.create_user("mallory")
    agent_token = cluster.create_agent_token()
    joined = agent_pb2_grpc.AgentServiceStub(cluster.channel()).Join(
        agent_pb2.JoinRequest(machine_group="local", hostname="nowhere"), metadata=cluster.metadata(agent_token)
    )
    running = admin.tasks.submit(SLEEP_60)
    eventually(lambda: running.info().status == simplane.TaskStatus.RUNNING, timeout=30)
    channel = grpc.insecure_channel(
        cluster.address,
        options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
    )
    bases = valid_bases(running.id, joined.machine_id)

    def agent_key(method: MethodDescriptor) -> str:
        """The join token joins; every other agent call takes the machine's own credential."""
        return agent_token if method.name == "Join" else joined.credential

    def key_for(method: MethodDescriptor) -> str:
        return agent_key(method) if method.containing_service.name == "AgentService" else mallory_key

    failures = []
    generator = random.Random(7)
    for method in METHODS:
        for size in RANDOM_SIZES:
            data = generator.randbytes(size)
            code, details = call(channel, method, [data], key_for(method))
            if code in FORBIDDEN:
                failures.append(f"{method.full_name} with {size} random bytes: {code} {details}")
            elif not decodes(method, data) and code not in (INVALID, grpc.StatusCode.UNIMPLEMENTED):
                failures.append(f"{method.full_name}: {size} undecodable bytes gave {code} {details}")
    for method in METHODS:
        request_class = GetMessageClass(method.input_type)
        for label, setter in edge_variants(method.input_type):
            request = request_class()
            base = bases.get(method.input_type.full_name)
            if base is not None:
                request.CopyFrom(base)
            setter(request)
            key = agent_key(method) if method.containing_service.name == "AgentService" else cluster.api_key
            messages = [request.SerializeToString()]
            if method.client_streaming and base is not None:
                messages.insert(0, base.SerializeToString())  # the edge value as a later message of the stream
            for sent in (messages[-1:], messages) if len(messages) > 1 else (messages,):
                code, details = call(channel, method, sent, key)
                if code in FORBIDDEN:
                    failures.append(f"{method.full_name} with {label}: {code} {details}")
    assert not failures, "\n".join(failures[:40])

    # What the issue saw answer INTERNAL, or queue a task that wedged every later one, is refused by name; so is
    # a bad message later in a stream, the agents' Connect included (whose stream a task of its own reads).
    submit, kill, list_tasks = (
        _method(task_pb2, "TaskService", name) for name in ("SubmitTask", "KillTask", "ListTasks")
    )
    upload, connect = (
        _method(storage_pb2, "StorageService", "UploadFiles"),
        _method(agent_pb2, "AgentService", "Connect"),
    )
    forever = Duration(seconds=2**63 - 1)
    cases: list[tuple[MethodDescriptor, list[Message], str]] = [
        (submit, [task_pb2.SubmitTaskRequest(command=["true"], time_to_live=forever)], "time_to_live"),
        (submit, [task_pb2.SubmitTaskRequest(command=["true"], name="a\0b")], "name"),
        (submit, [task_pb2.SubmitTaskRequest(command=["true"] * 3 + ["x" * 60_000] * 10)], "command"),
        (kill, [task_pb2.KillTaskRequest(task_id=running.id, grace_period=forever)], "grace_period"),
        (list_tasks, [task_pb2.ListTasksRequest(query=MEGABYTE_TEXT)], "query"),
        (list_tasks, [task_pb2.ListTasksRequest(created_after=Timestamp(seconds=2**63 - 1))], "created_after"),
        (list_tasks, [task_pb2.ListTasksRequest(page_token="AA==")], "page_token"),  # base64 of a NUL
        (
            upload,
            [
                bases["simplane.v1.UploadFilesRequest"],
                storage_pb2.UploadFilesRequest(chunk=storage_pb2.FileChunk(path="a\0")),
            ],
            "chunk.path",
        ),
        (
            connect,
            [
                bases["simplane.v1.ConnectRequest"],
                agent_pb2.ConnectRequest(task_update=agent_pb2.TaskUpdate(error="\0")),
            ],
            "task_update.error",
        ),
    ]
    for method, requests, field in cases:
        key = joined.credential if method is connect else cluster.api_key
        code, details = call(channel, method, [r.SerializeToString() for r in requests], key)
        assert (code, details.partition(":")[0]) == (INVALID, field), (method.name, details)
    channel.close()

    # Everyone's tasks still run: the admin's, mallory's, and those of a user made after all this.
    running.kill()
    alice = cluster.client(api_key=cluster.create_user("alice"))
    mallory = cluster.client(api_key=mallory_key)
    for client in (admin, mallory, alice):
        assert client.tasks.submit(["true"]).wait(timeout=60) == simplane.TaskStatus.SUCCEEDED
    assert "Traceback" not in cluster.output()


def _method(module: ModuleType, service: str, name: str) -> MethodDescriptor:
    descriptor: FileDescriptor = module.DESCRIPTOR
    return descriptor.services_by_name[service].methods_by_name[name]


def valid_bases(running_task: str, machine_id: str) -> dict[str, Message]:
    """Valid requests to start edge values from, so that each edge value reaches past the other fields' checks."""
    return {
        "simplane.v1.SubmitTaskRequest": task_pb2.SubmitTaskRequest(command=["true"]),
        "simplane.v1.KillTaskRequest": task_pb2.KillTaskRequest(task_id=running_task),
        "simplane.v1.GetTaskRequest": task_pb2.GetTaskRequest(task_id=running_task),
        "simplane.v1.TailLogsRequest": task_pb2.TailLogsRequest(task_id=running_task),
        "simplane.v1.ListTaskFilesRequest": task_pb2.ListTaskFilesRequest(task_id=running_task),
        "simplane.v1.WatchTasksRequest": task_pb2.WatchTasksRequest(task_ids=[running_task]),
        "simplane.v1.UploadFilesRequest": storage_pb2.UploadFilesRequest(
            prefix="hostile/", chunk=storage_pb2.FileChunk(path="a", data=b"a", sha256=_SHA256_OF_A)
        ),
        "simplane.v1.UploadFileRequest": storage_pb2.UploadFileRequest(
            prefix="hostile/", chunk=storage_pb2.FileChunk(path="b", data=b"a", sha256=_SHA256_OF_A)
        ),
        "simplane.v1.ConnectRequest": agent_pb2.ConnectRequest(
            hello=agent_pb2.AgentHello(agent_id=machine_id, machine_group="local", hostname="nowhere", slots=1)
        ),
        "simplane.v1.UploadOutputsRequest": agent_pb2.UploadOutputsRequest(task_id=running_task),
        "simplane.v1.DownloadInputsRequest": agent_pb2.DownloadInputsRequest(task_id=running_task),
        "simplane.v1.CreateAgentTokenRequest": machine_group_pb2.CreateAgentTokenRequest(machine_group="local"),
    }


_SHA256_OF_A = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"


def call(
    channel: grpc.Channel, method: MethodDescriptor, messages: list[bytes], key: str
) -> tuple[grpc.StatusCode, str]:
    """Sends request bytes (no serializer) and returns the status the call ended with."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    metadata = (("authorization", f"Bearer {key}"),)
    responses: grpc._CallIterator[bytes]
    try:
        if method.client_streaming and method.server_streaming:
            stream_stream: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
            responses = stream_stream(iter(messages), metadata=metadata, timeout=CALL_TIMEOUT)
        elif method.client_streaming:
            stream_unary: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(path)
            stream_unary(iter(messages), metadata=metadata, timeout=CALL_TIMEOUT)
            return grpc.StatusCode.OK, ""
        elif method.server_streaming:
            unary_stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            responses = unary_stream(messages[0], metadata=metadata, timeout=CALL_TIMEOUT)
        else:
            unary_unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            unary_unary(messages[0], metadata=metadata, timeout=CALL_TIMEOUT)
            return grpc.StatusCode.OK, ""
        for _ in itertools.islice(responses, STREAM_READS):
            pass
        responses.cancel()
        return responses.code(), responses.details() or ""
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def decodes(method: MethodDescriptor, data: bytes) -> bool:
    try:
        GetMessageClass(method.input_type).FromString(data)
    except DecodeError:
        return False
    return True


def edge_variants(descriptor: Descriptor, depth: int = 0) -> Iterator[tuple[str, Setter]]:
    """(label, setter) pairs, each putting one edge value into one field (nested messages included)."""
    for field in descriptor.fields:
        for label, setter in _field_edges(field, depth):
            yield f"{field.name}={label}", setter


def _field_edges(field: FieldDescriptor, depth: int) -> Iterator[tuple[str, Setter]]:
    name = field.name
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        value_field = message.fields_by_name["value"]
        samples = _scalar_edges(message.fields_by_name["key"])
        if value_field.type == FieldDescriptor.TYPE_STRING and samples:
            for label, key in samples:
                yield f"key:{label}", lambda m, key=key: getattr(m, name).__setitem__(key, "v")
                yield f"value:{label}", lambda m, key=key: getattr(m, name).__setitem__("K", key)
            yield "many", lambda m: getattr(m, name).update({f"K{i}": "v" for i in range(HUGE_COUNT)})
        return
    if message is not None and message.full_name in ("google.protobuf.Duration", "google.protobuf.Timestamp"):
        for label, values in TIME_EDGES:
            if field.is_repeated:
                yield label, lambda m, values=values: getattr(m, name).add(**values)
            else:
                yield label, lambda m, values=values: getattr(m, name).MergeFrom(type(getattr(m, name))(**values))
        return
    if message is not None:
        if depth >= 3:
            return
        for label, nested in edge_variants(message, depth + 1):
            if field.is_repeated:
                yield label, lambda m, nested=nested: nested(getattr(m, name).add())
            else:
                yield label, lambda m, nested=nested: nested(getattr(m, name))
        if field.is_repeated:
            yield "many", lambda m: _add_empty(getattr(m, name), HUGE_COUNT)
        return
    for label, value in _scalar_edges(field):
        if field.is_repeated:
            yield label, lambda m, value=value: getattr(m, name).append(value)
        else:
            yield label, lambda m, value=value: setattr(m, name, value)
    if field.is_repeated and field.type in SMALL_VALUES:
        yield "many", lambda m: getattr(m, name).extend([SMALL_VALUES[field.type]] * HUGE_COUNT)


def _add_empty(repeated: RepeatedCompositeFieldContainer[Message], count: int) -> None:
    for _ in range(count):
        repeated.add()


def _scalar_edges(field: FieldDescriptor) -> list[tuple[str, object]]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return [("nul", "a\0b"), ("dots", "../../x"), ("megabyte", MEGABYTE_TEXT)]
    if kind == FieldDescriptor.TYPE_BYTES:
        return [("megabyte", b"\0" * (1 << 20))]
    if kind in INT_EDGES:
        return [(str(value), value) for value in INT_EDGES[kind]]
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return [("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf)]
    if kind == FieldDescriptor.TYPE_ENUM:
        return [("unknown-enum", 99), ("negative-enum", -1)]
    if kind == FieldDescriptor.TYPE_BOOL:
        return [("true", True)]
    return []
