"""What the server and an agent say to each other, in the core's terms: the core and the hub speak these, and
agent_protocol.py, the one module that knows the wire, turns them into AgentService.Connect messages and back.
"""

from __future__ import annotations

from dataclasses import dataclass

from simplane._api.v1 import task_pb2
from simplane.server.task_record import TaskRecord

# -- what the server tells an agent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """Start this task (taken as it is when assigned)."""

    task_id: str
    attempt: int
    command: list[str]
    env: dict[str, str]
    cpus: int
    has_inputs: bool

    @classmethod
    def of(cls, task: TaskRecord) -> Assignment:
        return cls(task.id, task.attempt, list(task.command), dict(task.env), task.cpus, bool(task.inputs))


@dataclass(frozen=True)
class KillOrder:
    """Stop this task (SIGTERM, then SIGKILL after `grace` seconds); it ends as `status` with `reason`."""

    task_id: str
    status: int
    reason: str
    grace: float


@dataclass(frozen=True)
class OutputAck:
    """The server stores the stream up to `offset`: the agent may drop its spool before it."""

    task_id: str
    stream: str  # "stdout" or "stderr"
    offset: int


@dataclass(frozen=True)
class ReportAck:
    """The server stores the task's reports up to `seq`."""

    task_id: str
    seq: int


@dataclass(frozen=True)
class ListFiles:
    """List the working directory of a running task; the answer is a FileListing."""

    request_id: str
    task_id: str


@dataclass(frozen=True)
class ReadFile:
    """Send frames of a running task's file from `offset` (or its last `tail_lines`), then more as it grows if
    `follow`."""

    request_id: str
    task_id: str
    path: str
    offset: int
    tail_lines: int
    follow: bool


@dataclass(frozen=True)
class CancelRead:
    """Stop the read `request_id`: its reader went away, or fell behind (see AgentSession.read_file)."""

    request_id: str


Command = Assignment | KillOrder | OutputAck | ReportAck | ListFiles | ReadFile | CancelRead


@dataclass(frozen=True)
class Resume:
    """What the server has stored of a task a (re)connecting agent holds, so it resends only the rest."""

    task_id: str
    update_seq: int
    stdout_offset: int
    stderr_offset: int


# -- what an agent tells the server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskReport:
    """A move of a task on its machine (its status, exit code, sizes), numbered by `seq` per task."""

    task_id: str
    attempt: int
    seq: int
    status: int
    time: float | None  # Unix time of the move; None: not said
    exit_code: int | None
    error: str
    stdout_size: int
    stderr_size: int
    input_bytes: int
    input_files: int
    output_bytes: int
    output_files: int


@dataclass(frozen=True)
class FileListing:
    """The files of a running task's working directory, or why they could not be listed."""

    files: list[task_pb2.TaskFile]
    error: str


@dataclass(frozen=True)
class FileFrame:
    """A piece of a file of a running task, read by its agent."""

    offset: int
    data: bytes
    time_ns: int
    eof: bool
    error: str
