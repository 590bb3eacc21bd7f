"""What a request may hold: every limit on what callers send, in one place, checked at the edge.

status.py runs `check(request)` on every request message (and on each message of a stream) before a servicer
sees it, so nothing out of range is stored or queued. A message is walked field by field: no string holds a NUL
character (PostgreSQL refuses them in text, and file names cannot hold one), every string, repeated field and
map is bounded, every enum holds a value the API defines, and durations and timestamps lie in the ranges below.
FIELD_LIMITS sets the bounds of the fields that need their own; MESSAGE_CHECKS adds what a bound cannot say
(a command names a program). The limits are far beyond what a real user sends; docs/limits.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from simplane._api.v1 import storage_pb2, task_pb2
from simplane.server import errors

KIB = 1024
DAY = 24 * 3600

# Any string or repeated field (or map) not named in FIELD_LIMITS.
MAX_TEXT_CHARS = 4096
MAX_ITEMS = 10_000
# Ids of every kind: tasks, API keys, agents, a submit's request id.
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 256  # a task's name
MAX_PROJECT_CHARS = 128
MAX_GROUP_CHARS = 128  # a machine group's name
MAX_HOSTNAME_CHARS = 255
MAX_QUERY_CHARS = 256  # ListTasks' search text
MAX_DESCRIPTION_CHARS = 256  # an API key's description
MAX_PAGE_TOKEN_CHARS = 1024
MAX_ERROR_CHARS = 256 * KIB  # an error an agent reports: room for one that quotes a whole command
# Stored files and task files: a path, and each '/'-separated part of it (a file name on Linux).
MAX_PATH_CHARS = 1024
MAX_PATH_PART_BYTES = 255
# A command: each argument at most Linux's MAX_ARG_STRLEN (longer ones cannot be run); env likewise.
MAX_ARG_BYTES = 128 * KIB
MAX_COMMAND_ITEMS = 4096
MAX_COMMAND_BYTES = 256 * KIB
MAX_ENV_VARS = 1024
MAX_ENV_BYTES = 256 * KIB
MAX_SLOTS = 4096  # an agent's slots, a task's cpus
MAX_TIME_TO_LIVE_SECONDS = 366 * DAY
MAX_GRACE_PERIOD_SECONDS = DAY
MAX_DURATION_SECONDS = 366 * DAY  # any other duration
MAX_PAGE_SIZE = 1000
MAX_SNAPSHOT_ENDED = 10_000  # WatchTasks' snapshot_ended_limit
MAX_STATUSES = 16
MAX_WATCHED_TASKS = 1000  # WatchTasks' task_ids
MAX_CURSORS = 3  # one per log stream
MAX_LISTED_FILES = 1_000_000  # an agent's listing of a task's working directory
# One UploadFile message holds a whole file; larger files go through the UploadFiles stream.
MAX_SINGLE_UPLOAD = 32 * 1024 * 1024
# Timestamps: what nanoseconds since the epoch hold in 64 bits (1677-09-21 to 2262-04-11), the form the server
# stores them in; well inside google.protobuf.Timestamp's own range.
EARLIEST_SECONDS = -(2**63) // 10**9 + 1
LATEST_SECONDS = (2**63 - 1) // 10**9 - 1
_TIMESTAMP_RANGE = " and ".join(
    datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for seconds in (EARLIEST_SECONDS, LATEST_SECONDS)
)


@dataclass(frozen=True)
class Limit:
    """The bounds of one field; a field not named in FIELD_LIMITS gets the defaults."""

    chars: int = MAX_TEXT_CHARS  # each string: the field, each item of it, each key and value of a map
    items: int = MAX_ITEMS  # a repeated field's items, a map's entries
    total_bytes: int | None = None  # all the strings of a repeated field or map together, UTF-8 encoded
    path: bool = False  # a '/'-separated path: each part at most MAX_PATH_PART_BYTES
    low: int | None = None  # a number
    high: int | None = None
    seconds: int = MAX_DURATION_SECONDS  # a duration: from 0 to this


DEFAULT = Limit()
_ID = Limit(chars=MAX_ID_CHARS)
_GROUP = Limit(chars=MAX_GROUP_CHARS)
_PATH = Limit(chars=MAX_PATH_CHARS, path=True)
_ERROR = Limit(chars=MAX_ERROR_CHARS)

FIELD_LIMITS: dict[str, Limit] = {
    f"simplane.v1.{name}": limit
    for name, limit in {
        # task.proto
        "SubmitTaskRequest.command": Limit(chars=MAX_ARG_BYTES, items=MAX_COMMAND_ITEMS, total_bytes=MAX_COMMAND_BYTES),
        "SubmitTaskRequest.name": Limit(chars=MAX_NAME_CHARS),
        "SubmitTaskRequest.project": Limit(chars=MAX_PROJECT_CHARS),
        "SubmitTaskRequest.machine_group": _GROUP,
        "SubmitTaskRequest.time_to_live": Limit(seconds=MAX_TIME_TO_LIVE_SECONDS),
        "SubmitTaskRequest.cpus": Limit(low=0, high=MAX_SLOTS),
        "SubmitTaskRequest.env": Limit(chars=MAX_ARG_BYTES, items=MAX_ENV_VARS, total_bytes=MAX_ENV_BYTES),
        "SubmitTaskRequest.inputs": _PATH,
        "SubmitTaskRequest.request_id": _ID,
        "GetTaskRequest.task_id": _ID,
        "ListTasksRequest.statuses": Limit(items=MAX_STATUSES),
        "ListTasksRequest.project": Limit(chars=MAX_PROJECT_CHARS),
        "ListTasksRequest.machine_group": _GROUP,
        "ListTasksRequest.page_size": Limit(low=0, high=MAX_PAGE_SIZE),
        "ListTasksRequest.page_token": Limit(chars=MAX_PAGE_TOKEN_CHARS),
        "ListTasksRequest.query": Limit(chars=MAX_QUERY_CHARS),
        "KillTaskRequest.task_id": _ID,
        "KillTaskRequest.grace_period": Limit(seconds=MAX_GRACE_PERIOD_SECONDS),
        "ListTaskFilesRequest.task_id": _ID,
        "WatchTasksRequest.task_ids": Limit(chars=MAX_ID_CHARS, items=MAX_WATCHED_TASKS),
        "WatchTasksRequest.project": Limit(chars=MAX_PROJECT_CHARS),
        "WatchTasksRequest.machine_group": _GROUP,
        "WatchTasksRequest.snapshot_ended_limit": Limit(low=0, high=MAX_SNAPSHOT_ENDED),
        "TailLogsRequest.task_id": _ID,
        "TailLogsRequest.cursors": Limit(items=MAX_CURSORS),
        "TailLogsRequest.file": _PATH,
        # storage.proto
        "FileChunk.path": _PATH,
        "FileChunk.sha256": Limit(chars=64),
        "UploadFilesRequest.prefix": _PATH,
        "UploadFileRequest.prefix": _PATH,
        "DownloadFilesRequest.prefix": _PATH,
        "ListFilesRequest.prefix": _PATH,
        "DeleteFilesRequest.prefix": _PATH,
        # account.proto
        "CreateApiKeyRequest.description": Limit(chars=MAX_DESCRIPTION_CHARS),
        "RevokeApiKeyRequest.id": _ID,
        "CreateUserRequest.name": _ID,
        # machine_group.proto
        "CreateMachineGroupRequest.name": _GROUP,
        "GetMachineGroupRequest.name": _GROUP,
        "TerminateMachineGroupRequest.name": _GROUP,
        "ListMachinesRequest.machine_group": _GROUP,
        "CreateAgentTokenRequest.machine_group": _GROUP,
        # agent.proto
        "JoinRequest.machine_group": _GROUP,
        "JoinRequest.hostname": Limit(chars=MAX_HOSTNAME_CHARS),
        "AgentHello.agent_id": _ID,
        "AgentHello.machine_group": _GROUP,
        "AgentHello.hostname": Limit(chars=MAX_HOSTNAME_CHARS),
        "AgentHello.slots": Limit(low=0, high=MAX_SLOTS),
        "HeldTask.task_id": _ID,
        "TaskUpdate.task_id": _ID,
        "TaskUpdate.error": _ERROR,
        "TaskOutput.task_id": _ID,
        "FileListing.request_id": _ID,
        "FileListing.files": Limit(items=MAX_LISTED_FILES),
        "FileListing.error": _ERROR,
        "FileData.request_id": _ID,
        "FileData.error": _ERROR,
        "DownloadInputsRequest.task_id": _ID,
        "UploadOutputsRequest.task_id": _ID,
    }.items()
}


def check(request: Message) -> None:
    """Raises InvalidArgument, naming the field (e.g. "command[3]"), for the first value out of bounds."""
    _check_message(request, "")
    extra = MESSAGE_CHECKS.get(request.DESCRIPTOR.full_name)
    if extra is not None:
        extra(request)


def check_text(field: str, value: str, chars: int) -> None:
    """A string the stores can keep: at most `chars` characters, no NUL."""
    if len(value) > chars:
        raise errors.InvalidArgument(field, f"holds {len(value)} characters, more than the {chars} allowed")
    if "\0" in value:
        raise errors.InvalidArgument(field, "must not contain NUL characters")


def _check_message(message: Message, prefix: str) -> None:
    for field, value in message.ListFields():
        name = prefix + field.name
        limit = FIELD_LIMITS.get(field.full_name, DEFAULT)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _check_count(name, len(value), limit)
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                entry = f"{name}[{key[:32]!r}]" if isinstance(key, str) else f"{name}[{key}]"
                _check_value(entry, key, field.message_type.fields_by_name["key"], limit)
                _check_value(entry, item, value_field, limit)
            if limit.total_bytes is not None:
                _check_bytes(name, [*value.keys(), *value.values()], limit.total_bytes)
        elif field.is_repeated:
            _check_count(name, len(value), limit)
            for index, item in enumerate(value):
                _check_value(f"{name}[{index}]", item, field, limit)
            if limit.total_bytes is not None and field.type == FieldDescriptor.TYPE_STRING:
                _check_bytes(name, value, limit.total_bytes)
        else:
            _check_value(name, value, field, limit)


def _check_value(name: str, value: object, field: FieldDescriptor, limit: Limit) -> None:
    """One value of `field`: told apart by its Python type, which the field's type fixes (a string field holds a
    str, a message field an instance of its message's class)."""
    if isinstance(value, str):
        check_text(name, value, limit.chars)
        if limit.path:
            _check_path_parts(name, value)
    elif isinstance(value, Duration):
        _check_duration(name, value, limit.seconds)
    elif isinstance(value, Timestamp):
        _check_timestamp(name, value)
    elif isinstance(value, Message):
        _check_message(value, name + ".")
    elif field.enum_type is not None:
        if value not in field.enum_type.values_by_number:
            raise errors.InvalidArgument(name, f"{value} is not a {field.enum_type.name}")
    elif isinstance(value, int) and not isinstance(value, bool):
        _check_number(name, value, limit)


def _check_number(name: str, value: int, limit: Limit) -> None:
    low, high = limit.low, limit.high
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            raise errors.InvalidArgument(name, f"must be between {low} and {high}, got {value}")
        if low is not None:
            raise errors.InvalidArgument(name, f"must be at least {low}, got {value}")
        raise errors.InvalidArgument(name, f"must be at most {high}, got {value}")


def _check_count(name: str, count: int, limit: Limit) -> None:
    if count > limit.items:
        raise errors.InvalidArgument(name, f"holds {count} items, more than the {limit.items} allowed")


def _check_bytes(name: str, values: Iterable[str], most: int) -> None:
    size = sum(len(value.encode()) for value in values)
    if size > most:
        raise errors.InvalidArgument(name, f"holds {size} bytes in all, more than the {most} allowed")


def _check_path_parts(name: str, path: str) -> None:
    for part in path.split("/"):
        if len(part.encode()) > MAX_PATH_PART_BYTES:
            raise errors.InvalidArgument(name, f"a part of the path is longer than {MAX_PATH_PART_BYTES} bytes")


def _check_duration(name: str, value: Duration, most: int) -> None:
    seconds, nanos = value.seconds, value.nanos
    if seconds < 0 or nanos < 0:
        raise errors.InvalidArgument(name, "must not be negative")
    if nanos >= 10**9:
        raise errors.InvalidArgument(name, f"nanos must be below 1e9, got {nanos}")
    if seconds > most or (seconds == most and nanos):
        raise errors.InvalidArgument(name, f"must be at most {most} s, got {seconds} s")


def _check_timestamp(name: str, value: Timestamp) -> None:
    seconds, nanos = value.seconds, value.nanos
    if not 0 <= nanos < 10**9:
        raise errors.InvalidArgument(name, f"nanos must be from 0 to 999999999, got {nanos}")
    if not EARLIEST_SECONDS <= seconds <= LATEST_SECONDS:
        raise errors.InvalidArgument(name, f"must lie between {_TIMESTAMP_RANGE}, got {seconds} s")


def _check_submit_task(request: task_pb2.SubmitTaskRequest) -> None:
    if not request.command or not request.command[0]:
        raise errors.InvalidArgument("command", "must name a program to run")
    for key in request.env:
        if not key or "=" in key:
            raise errors.InvalidArgument("env", f"invalid variable name {key[:32]!r}")


def _check_list_tasks(request: task_pb2.ListTasksRequest) -> None:
    if task_pb2.TASK_STATUS_UNSPECIFIED in request.statuses:
        raise errors.InvalidArgument("statuses", "TASK_STATUS_UNSPECIFIED is not a status a task has")


def _check_upload_file(request: storage_pb2.UploadFileRequest) -> None:
    """UploadFile's one message is the whole file: its data from offset 0, with the SHA-256 of all of it."""
    chunk = request.chunk
    if len(chunk.data) > MAX_SINGLE_UPLOAD:
        raise errors.InvalidArgument("chunk.data", f"holds more than {MAX_SINGLE_UPLOAD} bytes: use UploadFiles")
    if chunk.offset != 0:
        raise errors.InvalidArgument("chunk.offset", "must be 0: the message holds the whole file")
    if not chunk.sha256:
        raise errors.InvalidArgument("chunk.sha256", "is required: the SHA-256 of the whole file")


# Each check takes the message its key names (Any: a Callable's argument type cannot follow the key).
MESSAGE_CHECKS: dict[str, Callable[[Any], None]] = {
    "simplane.v1.SubmitTaskRequest": _check_submit_task,
    "simplane.v1.ListTasksRequest": _check_list_tasks,
    "simplane.v1.UploadFileRequest": _check_upload_file,
}
