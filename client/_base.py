"""What Client and AsyncClient share, none of it I/O: channel settings, request building, turning TailLogs
frames into lines, and the cursors from which a dropped stream resumes.
"""

from __future__ import annotations

import os
import shlex
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from google.protobuf.duration_pb2 import Duration as DurationMessage
from google.protobuf.timestamp_pb2 import Timestamp

from simplane._api.v1 import task_pb2
from simplane._durations import Duration, to_timedelta
from simplane._protocol.backoff import Backoff
from simplane._protocol.channel import MAX_MESSAGE_BYTES, channel_options
from simplane.errors import InvalidArgument, Timeout, translate_rpc_error
from simplane.models import LogLine, LogStreamName, TaskEvent, TaskInfo, TaskStatus

# Reconnects within a second of a server coming back, so resumed streams lose little time.
CHANNEL_OPTIONS = channel_options(first_reconnect_ms=100, max_message_bytes=MAX_MESSAGE_BYTES)


DEFAULT_RETRY_TIMEOUT = 30.0


class Retrying:
    """Paces the retries of a call that is safe to repeat (a read, or a submit with its request id) while the
    server answers UNAVAILABLE (restarting, or its database away): 0.1 s doubling to 2 s, until `timeout` seconds
    have passed since the first attempt."""

    INITIAL_DELAY = 0.1
    MAX_DELAY = 2.0

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        self._backoff = Backoff(self.INITIAL_DELAY, self.MAX_DELAY, jitter=False)

    def next_delay(self, error: Any) -> float | None:
        """Seconds to wait before repeating the call that raised `error` (a grpc.RpcError); None: raise it."""
        left = self._deadline - time.monotonic()
        if error.code().name != "UNAVAILABLE" or left <= 0:
            return None
        return min(self._backoff.next_delay(), left)


def recover_stream(
    error: Any, *, connected: bool, can_restart: bool, has_deadline: bool = False
) -> Literal["restart", "reconnect"]:
    """What a resumable stream does after `error` (a grpc.RpcError): start over from a snapshot when the server
    no longer has the point to resume from, reconnect and resume after losing a stream that had worked, or
    raise the client's error for anything else."""
    code = error.code().name
    if code == "OUT_OF_RANGE" and can_restart:
        return "restart"
    if code == "DEADLINE_EXCEEDED" and has_deadline:
        raise Timeout("the wait timed out") from None
    if code != "UNAVAILABLE" or not connected:
        raise translate_rpc_error(error) from error
    return "reconnect"


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """Sent with every call; with no key there is no header and the server answers UNAUTHENTICATED."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def inputs_prefix() -> str:
    """A fresh storage prefix for one submission's inputs."""
    return f"inputs/{os.urandom(16).hex()}/"


def duration_message(value: timedelta) -> DurationMessage:
    message = DurationMessage()
    message.FromTimedelta(value)
    return message


def _timestamp(value: datetime) -> Timestamp:
    message = Timestamp()
    message.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return message


def submit_request(
    command: list[str] | str,
    *,
    inputs: str,
    machine_group: str,
    name: str,
    project: str,
    time_to_live: Duration | None,
    cpus: int,
    env: Mapping[str, str] | None,
) -> task_pb2.SubmitTaskRequest:
    request = task_pb2.SubmitTaskRequest(
        command=shlex.split(command) if isinstance(command, str) else [str(part) for part in command],
        name=name,
        project=project,
        machine_group=machine_group,
        cpus=cpus,
        env=dict(env or {}),
        inputs=inputs,
        # The same id on every attempt: a submit repeated after a lost answer returns the task the first made.
        request_id=uuid.uuid4().hex,
    )
    if time_to_live is not None:
        request.time_to_live.CopyFrom(duration_message(to_timedelta(time_to_live, "time_to_live")))
    return request


def kill_request(task_id: str, grace_period: Duration | None) -> task_pb2.KillTaskRequest:
    request = task_pb2.KillTaskRequest(task_id=task_id)
    if grace_period is not None:
        request.grace_period.CopyFrom(duration_message(to_timedelta(grace_period, "grace_period")))
    return request


StatusFilter = TaskStatus | str | Iterable[TaskStatus | str] | None


class TaskListing:
    """ListTasks pages for one query: the next request, and how many tasks the caller still wants."""

    def __init__(
        self,
        *,
        status: StatusFilter,
        project: str | None,
        machine_group: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        search: str | None,
        limit: int | None,
        page_size: int,
    ) -> None:
        if limit is not None and limit < 0:
            raise InvalidArgument.of_field("limit", f"must not be negative, got {limit}")
        if page_size < 1:
            raise InvalidArgument.of_field("page_size", f"must be positive, got {page_size}")
        statuses = [status] if isinstance(status, str) else list(status or ())
        self._request = task_pb2.ListTasksRequest(
            statuses=[cast("task_pb2.TaskStatus.ValueType", TaskStatus.parse(item).to_proto()) for item in statuses],
            project=project or "",
            machine_group=machine_group or "",
            query=search or "",
        )
        if created_after is not None:
            self._request.created_after.CopyFrom(_timestamp(created_after))
        if created_before is not None:
            self._request.created_before.CopyFrom(_timestamp(created_before))
        self._page_size = page_size
        self.remaining = limit  # None: no limit
        self.done = limit == 0

    def request(self) -> task_pb2.ListTasksRequest:
        size = self._page_size if self.remaining is None else min(self._page_size, self.remaining)
        self._request.page_size = size
        return self._request

    def page(self, response: task_pb2.ListTasksResponse) -> list[TaskInfo]:
        """The page's tasks, cut to the limit; sets `done` when there is nothing more to fetch."""
        tasks = list(response.tasks)
        if self.remaining is not None:
            tasks = tasks[: self.remaining]
            self.remaining -= len(tasks)
        self._request.page_token = response.next_page_token
        self.done = not response.next_page_token or self.remaining == 0
        return [TaskInfo.from_proto(task) for task in tasks]


class Reconnect:
    """Paces attempts to reopen a dropped stream: 50 ms doubling to 1 s, giving up after 5 minutes
    in which no frame arrived."""

    INITIAL_DELAY = 0.05
    MAX_DELAY = 1.0
    GIVE_UP_AFTER = 300.0

    def __init__(self) -> None:
        self._backoff = Backoff(self.INITIAL_DELAY, self.MAX_DELAY, jitter=False)
        self._deadline: float | None = None
        self.attempted = False

    def progressed(self) -> None:
        self._backoff.reset()
        self._deadline = None

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt; None once it is time to give up."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.GIVE_UP_AFTER
        if now >= self._deadline:
            return None
        self.attempted = True
        return min(self._backoff.next_delay(), self._deadline - now)

    def remaining(self) -> float:
        """Seconds left before giving up (only meaningful after next_delay)."""
        return max(0.0, (self._deadline or time.monotonic()) - time.monotonic())


def remaining(deadline: float | None) -> float | None:
    """Seconds until a monotonic deadline (None: no deadline), never negative."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# ---- Logs -------------------------------------------------------------------------------------------------

_STREAM_NAMES: dict[task_pb2.LogStream.ValueType, LogStreamName] = {
    task_pb2.LOG_STREAM_STDOUT: "stdout",
    task_pb2.LOG_STREAM_STDERR: "stderr",
    task_pb2.LOG_STREAM_FILE: "file",
}
_STREAMS_FOR: dict[str, tuple[task_pb2.LogStream.ValueType, ...]] = {
    "all": (task_pb2.LOG_STREAM_STDOUT, task_pb2.LOG_STREAM_STDERR),
    "stdout": (task_pb2.LOG_STREAM_STDOUT,),
    "stderr": (task_pb2.LOG_STREAM_STDERR,),
}


class StreamLines:
    """Joins one stream's chunks into lines.

    `cursor` is the offset of the first byte not yet handed out in a line: the offset to resume from, always a
    line start. It is None until known (a tail of the last N lines starts wherever the server finds it).
    """

    __slots__ = ("_end", "_parts", "_time", "cursor", "name")

    def __init__(self, name: LogStreamName, cursor: int | None) -> None:
        self.name = name
        self.cursor = cursor
        self._end = cursor  # the offset after the last byte received
        self._parts: list[bytes] = []  # the pending partial line
        self._time: datetime | None = None  # when its first byte was read

    def feed(self, offset: int, data: bytes, read_time: datetime, out: list[LogLine]) -> None:
        """Appends to `out` the lines this chunk completes; bytes already received are skipped."""
        end = self._end
        if end is None or offset > end:
            self.flush(out)  # a gap: the pending line cannot continue
            self.cursor = self._end = end = offset
        elif offset < end:
            data = data[end - offset :]
            offset = end
        if not data:
            return
        self._end = offset + len(data)
        pieces = data.split(b"\n")
        if len(pieces) == 1:
            if not self._parts:
                self._time = read_time
            self._parts.append(data)
            return
        name = self.name
        first = pieces[0]
        if self._parts:
            self._parts.append(first)
            assert self._time is not None and self.cursor is not None  # set once a part is pending
            out.append(LogLine(name, b"".join(self._parts), self._time, self.cursor))
            self._parts = []
        else:
            out.append(LogLine(name, first, read_time, offset))
        position = offset + len(first) + 1
        last = pieces.pop()
        append = out.append
        for index in range(1, len(pieces)):
            piece = pieces[index]
            append(LogLine(name, piece, read_time, position))
            position += len(piece) + 1
        if last:
            self._parts.append(last)
            self._time = read_time
        self.cursor = position

    def flush(self, out: list[LogLine]) -> None:
        """Hands out the pending partial line, if any: the stream ended without a final newline."""
        if self._parts:
            data = b"".join(self._parts)
            assert self._time is not None and self.cursor is not None  # set once a part is pending
            out.append(LogLine(self.name, data, self._time, self.cursor, newline=False))
            self._parts = []
            self.cursor = self._end


class LogTail:
    """One logical TailLogs read, across however many streams it takes: builds the request to (re)open it with,
    turns frames into lines, and knows when it is over."""

    def __init__(
        self,
        task_id: str,
        *,
        follow: bool,
        stream: Literal["all", "stdout", "stderr"],
        lines: int | None,
        file: str | None,
    ) -> None:
        if stream not in _STREAMS_FOR:
            raise InvalidArgument.of_field("stream", f'expected "all", "stdout" or "stderr", got {stream!r}')
        if lines is not None and lines < 1:
            raise InvalidArgument.of_field("lines", f"must be positive, got {lines}")
        numbers = (task_pb2.LOG_STREAM_FILE,) if file else _STREAMS_FOR[stream]
        start = None if lines else 0
        self._streams = {number: StreamLines(_STREAM_NAMES[number], start) for number in numbers}
        self._task_id = task_id
        self._file = file or ""
        self._follow = follow
        self._tail_lines = lines or 0
        self.ended = False

    def request(self) -> task_pb2.TailLogsRequest:
        """Asks for the last N lines until some stream's position is known, then resumes from the cursors.

        A stream still unplaced then restarts at 0: it had no output when the tail began.
        """
        tail_lines = 0
        if self._tail_lines and all(lines.cursor is None for lines in self._streams.values()):
            tail_lines = self._tail_lines
        return task_pb2.TailLogsRequest(
            task_id=self._task_id,
            cursors=[
                task_pb2.LogCursor(stream=number, offset=lines.cursor or 0) for number, lines in self._streams.items()
            ],
            file=self._file,
            tail_lines=tail_lines,
            follow=self._follow,
        )

    def lines(self, frame: task_pb2.TailLogsResponse) -> list[LogLine]:
        """The lines a frame completes; at the TaskEnd frame, also every pending partial line."""
        out: list[LogLine] = []
        kind = frame.WhichOneof("frame")
        if kind == "chunk":
            chunk = frame.chunk
            lines = self._streams.get(chunk.stream)
            if lines is not None:
                lines.feed(chunk.offset, chunk.data, chunk.time.ToDatetime(tzinfo=UTC), out)
        elif kind == "end":
            self.ended = True
            out = self.finish()
        return out

    def finish(self) -> list[LogLine]:
        """Pending partial lines, once the stream has ended."""
        out: list[LogLine] = []
        for lines in self._streams.values():
            lines.flush(out)
        return out

    def should_reopen(self) -> bool:
        """Whether a stream that closed cleanly is unfinished: a follow that never saw its TaskEnd."""
        return self._follow and not self.ended


# ---- Watching tasks ---------------------------------------------------------------------------------------

_EVENT_TYPES: dict[int, Literal["snapshot", "snapshot_end", "change"]] = {
    task_pb2.WATCH_EVENT_TYPE_SNAPSHOT: "snapshot",
    task_pb2.WATCH_EVENT_TYPE_SNAPSHOT_END: "snapshot_end",
    task_pb2.WATCH_EVENT_TYPE_CHANGE: "change",
}


class WatchCursor:
    """Where a WatchTasks stream resumes: after the last revision it has passed, or from a fresh snapshot when
    no snapshot was completed yet (or the server no longer keeps that revision)."""

    def __init__(self, *, task_ids: Iterable[str] | None, project: str | None, machine_group: str | None) -> None:
        self._request = task_pb2.WatchTasksRequest(
            task_ids=list(task_ids or ()), project=project or "", machine_group=machine_group or ""
        )
        self.since_revision = 0
        self._live = False

    def request(self) -> task_pb2.WatchTasksRequest:
        self._live = self.since_revision > 0
        self._request.since_revision = self.since_revision
        return self._request

    def restart(self) -> None:
        """The server no longer has our revision (OUT_OF_RANGE): start over from a snapshot."""
        self.since_revision = 0

    def event(self, response: task_pb2.WatchTasksResponse) -> TaskEvent | None:
        """The event a response carries; None for heartbeats and for changes already seen."""
        kind = response.type
        revision = response.revision
        if kind == task_pb2.WATCH_EVENT_TYPE_HEARTBEAT:
            if self._live:
                self.since_revision = max(self.since_revision, revision)
            return None
        if kind == task_pb2.WATCH_EVENT_TYPE_CHANGE:
            if revision <= self.since_revision:
                return None
            self.since_revision = revision
        elif kind == task_pb2.WATCH_EVENT_TYPE_SNAPSHOT_END:
            self._live = True
            self.since_revision = revision
        event_type = _EVENT_TYPES.get(kind)
        if event_type is None:
            return None
        task = TaskInfo.from_proto(response.task) if response.HasField("task") else None
        return TaskEvent(event_type, revision, task)


class TaskProgress:
    """One task's successive states from a watch, each reported once, in order, until a terminal one."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.cursor = WatchCursor(task_ids=[task_id], project=None, machine_group=None)
        self.latest: TaskInfo | None = None

    def advance(self, info: TaskInfo) -> bool:
        """Records a state; False if it is not newer than the last one."""
        if self.latest is not None and info.revision <= self.latest.revision:
            return False
        self.latest = info
        return True

    def state(self, event: TaskEvent) -> TaskInfo | None:
        """The new state an event brings, if any."""
        if event.task is not None and event.task.id == self.task_id and self.advance(event.task):
            return event.task
        return None

    def missing_from_snapshot(self, event: TaskEvent) -> bool:
        """The snapshot ended without our task (an ended task beyond the snapshot's limit): ask for it directly."""
        return event.type == "snapshot_end" and self.latest is None

    @property
    def ended(self) -> bool:
        return self.latest is not None and self.latest.status.is_terminal
