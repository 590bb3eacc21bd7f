"""What the client returns: plain dataclasses built from the API's messages, free of protobuf types.

Each record has `from_proto` (reads a message by field name, so this module loads without the generated stubs)
and `to_dict` (JSON-safe: ISO-8601 times, durations in seconds, enums as their names) for `--json` output.
Enum values are pinned to the numbers in protos/simplane/v1.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from simplane.errors import InvalidArgument

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from simplane._api.v1 import account_pb2, machine_group_pb2, storage_pb2, task_pb2

__all__ = [
    "ApiKey",
    "LogLine",
    "LogStreamName",
    "MachineGroupInfo",
    "MachineInfo",
    "StatusTransition",
    "StoredFile",
    "TaskEvent",
    "TaskFile",
    "TaskInfo",
    "TaskMetrics",
    "TaskStatus",
    "User",
]


class TaskStatus(enum.StrEnum):
    """A task's place in its lifecycle; the last five are terminal and final."""

    SUBMITTED = "SUBMITTED"
    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    RUNNING = "RUNNING"
    FINALIZING = "FINALIZING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    TIMED_OUT = "TIMED_OUT"
    LOST = "LOST"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @classmethod
    def parse(cls, value: TaskStatus | str) -> TaskStatus:
        """Accepts a member or its name in any case ("running", "Timed_Out")."""
        try:
            return cls(value.upper())
        except ValueError:
            names = ", ".join(member.value for member in cls)
            raise InvalidArgument.of_field("status", f"unknown status {value!r}; expected one of {names}") from None

    @classmethod
    def from_proto(cls, number: int) -> TaskStatus:
        return _STATUS_BY_NUMBER[number]

    def to_proto(self) -> int:
        return _NUMBER_BY_STATUS[self]


_STATUS_BY_NUMBER = dict(enumerate(TaskStatus, start=1))
_NUMBER_BY_STATUS = {status: number for number, status in _STATUS_BY_NUMBER.items()}
_TERMINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.KILLED, TaskStatus.TIMED_OUT, TaskStatus.LOST}
)

# Names of the other proto enums, indexed by value.
_MACHINE_PROVIDERS = ("UNSPECIFIED", "LOCAL", "GCE")
_MACHINE_GROUP_STATES = ("UNSPECIFIED", "STARTING", "ACTIVE", "TERMINATING", "TERMINATED")
_MACHINE_STATES = ("UNSPECIFIED", "STARTING", "CONNECTED", "LOST", "DISCONNECTED", "TERMINATED", "UNREACHABLE")


def _enum_name(names: tuple[str, ...], number: int) -> str:
    return names[number] if 0 <= number < len(names) else f"UNKNOWN_{number}"


def _time(message: Message, field: str) -> datetime | None:
    return getattr(message, field).ToDatetime(tzinfo=UTC) if message.HasField(field) else None


def _duration(message: Message, field: str) -> timedelta | None:
    return getattr(message, field).ToTimedelta() if message.HasField(field) else None


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    return value


class _Record:
    __slots__ = ()
    # Each subclass is a dataclass; declared here so that `dataclasses.fields(self)` type-checks.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields, in declaration order; the raw message is left out."""
        return {
            field.name: _json_value(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if field.name != "raw"
        }


@dataclasses.dataclass(frozen=True, slots=True)
class StatusTransition(_Record):
    status: TaskStatus
    time: datetime | None
    detail: str

    @classmethod
    def from_proto(cls, message: task_pb2.StatusTransition) -> StatusTransition:
        return cls(TaskStatus.from_proto(message.status), _time(message, "time"), message.detail)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskMetrics(_Record):
    """Phase durations derived from the status history (None for a phase not reached) and data volumes."""

    queued: timedelta | None
    preparing: timedelta | None
    computing: timedelta | None
    finalizing: timedelta | None
    total: timedelta | None
    input_bytes: int
    input_files: int
    output_bytes: int
    output_files: int

    @classmethod
    def from_proto(cls, message: task_pb2.TaskMetrics) -> TaskMetrics:
        return cls(
            queued=_duration(message, "queued"),
            preparing=_duration(message, "preparing"),
            computing=_duration(message, "computing"),
            finalizing=_duration(message, "finalizing"),
            total=_duration(message, "total"),
            input_bytes=message.input_bytes,
            input_files=message.input_files,
            output_bytes=message.output_bytes,
            output_files=message.output_files,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TaskInfo(_Record):
    """A task's state as of `revision`; `raw` keeps the message it came from."""

    id: str
    name: str
    project: str
    owner: str
    command: list[str]
    machine_group: str
    status: TaskStatus
    attempt: int
    exit_code: int | None
    error: str
    machine_id: str
    create_time: datetime | None
    update_time: datetime | None
    time_to_live: timedelta | None
    cpus: int
    env: dict[str, str]
    inputs: str
    history: list[StatusTransition]
    metrics: TaskMetrics
    revision: int
    # What holds the active task back now (its machine is unreachable, the server's disk is full); "" if nothing.
    warning: str
    raw: task_pb2.Task = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: task_pb2.Task) -> TaskInfo:
        return cls(
            id=message.id,
            name=message.name,
            project=message.project,
            owner=message.owner,
            command=list(message.command),
            machine_group=message.machine_group,
            status=TaskStatus.from_proto(message.status),
            attempt=message.attempt,
            exit_code=message.exit_code if message.HasField("exit_code") else None,
            error=message.error,
            machine_id=message.machine_id,
            create_time=_time(message, "create_time"),
            update_time=_time(message, "update_time"),
            time_to_live=_duration(message, "time_to_live") or None,
            cpus=message.cpus,
            env=dict(message.env),
            inputs=message.inputs,
            history=[StatusTransition.from_proto(item) for item in message.history],
            metrics=TaskMetrics.from_proto(message.metrics),
            revision=message.revision,
            warning=message.warning,
            raw=message,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TaskEvent(_Record):
    """One event of `tasks.watch()`: a task of the initial snapshot, the snapshot's end, or a change."""

    type: Literal["snapshot", "snapshot_end", "change"]
    revision: int
    task: TaskInfo | None


@dataclasses.dataclass(frozen=True, slots=True)
class TaskFile(_Record):
    """A file in a task's working directory (while it runs) or among its outputs (once it ended)."""

    path: str
    size: int
    modify_time: datetime | None

    @classmethod
    def from_proto(cls, message: task_pb2.TaskFile) -> TaskFile:
        return cls(message.path, message.size, _time(message, "modify_time"))


@dataclasses.dataclass(frozen=True, slots=True)
class StoredFile(_Record):
    path: str
    size: int
    sha256: str
    create_time: datetime | None

    @classmethod
    def from_proto(cls, message: storage_pb2.StoredFile) -> StoredFile:
        return cls(message.path, message.size, message.sha256, _time(message, "create_time"))


@dataclasses.dataclass(frozen=True, slots=True)
class User(_Record):
    name: str
    admin: bool
    create_time: datetime | None

    @classmethod
    def from_proto(cls, message: account_pb2.User) -> User:
        return cls(message.name, message.admin, _time(message, "create_time"))


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKey(_Record):
    id: str
    description: str
    create_time: datetime | None
    last_used_time: datetime | None
    revoked: bool

    @classmethod
    def from_proto(cls, message: account_pb2.ApiKey) -> ApiKey:
        return cls(
            id=message.id,
            description=message.description,
            create_time=_time(message, "create_time"),
            last_used_time=_time(message, "last_used_time"),
            revoked=message.revoked,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MachineGroupInfo(_Record):
    """A machine group; provider is "LOCAL" or "GCE", state e.g. "ACTIVE"."""

    name: str
    provider: str
    state: str
    machine_type: str
    zone: str
    machines: int
    spot: bool
    disk_size_gb: int
    cost_per_hour: float
    create_time: datetime | None
    connected_machines: int
    queued_tasks: int
    owner: str

    @classmethod
    def from_proto(cls, message: machine_group_pb2.MachineGroup) -> MachineGroupInfo:
        return cls(
            name=message.name,
            provider=_enum_name(_MACHINE_PROVIDERS, message.provider),
            state=_enum_name(_MACHINE_GROUP_STATES, message.state),
            machine_type=message.machine_type,
            zone=message.zone,
            machines=message.machines,
            spot=message.spot,
            disk_size_gb=message.disk_size_gb,
            cost_per_hour=message.cost_per_hour,
            create_time=_time(message, "create_time"),
            connected_machines=message.connected_machines,
            queued_tasks=message.queued_tasks,
            owner=message.owner,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MachineInfo(_Record):
    """A machine of a group; state e.g. "CONNECTED", "UNREACHABLE" or "LOST"."""

    id: str
    machine_group: str
    hostname: str
    state: str
    slots: int
    used_slots: int
    running_task_ids: list[str]
    load: float
    memory_total_bytes: int
    memory_used_bytes: int
    connect_time: datetime | None
    last_heartbeat_time: datetime | None

    @classmethod
    def from_proto(cls, message: machine_group_pb2.Machine) -> MachineInfo:
        return cls(
            id=message.id,
            machine_group=message.machine_group,
            hostname=message.hostname,
            state=_enum_name(_MACHINE_STATES, message.state),
            slots=message.slots,
            used_slots=message.used_slots,
            running_task_ids=list(message.running_task_ids),
            load=message.load,
            memory_total_bytes=message.memory_total_bytes,
            memory_used_bytes=message.memory_used_bytes,
            connect_time=_time(message, "connect_time"),
            last_heartbeat_time=_time(message, "last_heartbeat_time"),
        )


LogStreamName = Literal["stdout", "stderr", "file"]


class LogLine:
    """One line of a task's output: its bytes without the newline, where it starts, and when it was read.

    `offset` is the byte offset of the line's first byte in its stream; `timestamp` is when the agent read the
    chunk holding that byte. `data` is exactly what the task wrote; `text` is it decoded as UTF-8 (bad bytes
    replaced), made only when asked for. `newline` is False for a last line the task ended without a newline.
    """

    __slots__ = ("data", "newline", "offset", "stream", "timestamp")

    def __init__(
        self, stream: LogStreamName, data: bytes, timestamp: datetime, offset: int, *, newline: bool = True
    ) -> None:
        self.stream = stream
        self.data = data
        self.timestamp = timestamp
        self.offset = offset
        self.newline = newline

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"LogLine(stream={self.stream!r}, offset={self.offset}, text={self.text!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogLine):
            return NotImplemented
        return (self.stream, self.offset, self.data, self.timestamp, self.newline) == (
            other.stream,
            other.offset,
            other.data,
            other.timestamp,
            other.newline,
        )

    # Defining __eq__ already made the class unhashable; this says so to type checkers, which type __hash__ as a
    # method on object.
    __hash__ = None  # type: ignore[assignment]  # the documented way to declare a class unhashable

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "offset": self.offset,
            "timestamp": self.timestamp.isoformat(),
            "text": self.text,
        }
