"""TailLogs: a task's stdout and stderr from the log store, or a file of its working directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

from google.protobuf import timestamp_pb2

from simplane._api.v1 import task_pb2
from simplane.server import errors
from simplane.server.file_store import check_path
from simplane.server.log_store import LogStore, Piece
from simplane.server.task_files import TaskFiles
from simplane.server.task_record import TaskRecord
from simplane.server.tasks import TaskRegistry

L = task_pb2.LogStream
_STREAM_NAMES: dict[int, str] = {L.LOG_STREAM_STDOUT: "stdout", L.LOG_STREAM_STDERR: "stderr"}


class LogTail:
    def __init__(self, tasks: TaskRegistry, logs: LogStore, files: TaskFiles, heartbeat: float) -> None:
        self._tasks = tasks
        self._logs = logs
        self._files = files
        self._heartbeat = heartbeat

    async def stream(
        self, task: TaskRecord, request: task_pb2.TailLogsRequest
    ) -> AsyncIterator[task_pb2.TailLogsResponse]:
        cursors = list(request.cursors) or [
            task_pb2.LogCursor(stream=L.LOG_STREAM_STDOUT),
            task_pb2.LogCursor(stream=L.LOG_STREAM_STDERR),
        ]
        if request.tail_lines < 0:
            raise errors.InvalidArgument("tail_lines", "must not be negative")
        for cursor in cursors:
            if cursor.offset < 0:
                raise errors.InvalidArgument("cursors.offset", "must not be negative")
            if cursor.stream not in (*_STREAM_NAMES, L.LOG_STREAM_FILE):
                raise errors.InvalidArgument("cursors.stream", "must be STDOUT, STDERR or FILE")
        if len({c.stream for c in cursors}) < len(cursors):
            raise errors.InvalidArgument("cursors", "names a stream more than once")
        files = [c for c in cursors if c.stream == L.LOG_STREAM_FILE]
        if files:
            if len(cursors) > 1:
                raise errors.InvalidArgument("cursors", "a FILE cursor cannot be combined with other streams")
            check_path("file", request.file)
            frames = self._heartbeats(
                self._files.tail(task, request.file, files[0].offset, request.tail_lines, request.follow)
            )
        else:
            if request.file:
                raise errors.InvalidArgument("file", "is only read with a FILE cursor")
            frames = self._standard(task, cursors, request.tail_lines, request.follow)
        async for frame in frames:
            yield frame
        if request.follow:
            ending = asyncio.ensure_future(self._tasks.ended(task.id))
            try:
                while not (await asyncio.wait({ending}, timeout=self._heartbeat))[0]:
                    yield task_pb2.TailLogsResponse(heartbeat=_now())
            finally:
                ending.cancel()
            final = ending.result()
            end = task_pb2.TaskEnd(status=task_pb2.TaskStatus.ValueType(final.status), error=final.error)
            if final.exit_code is not None:
                end.exit_code = final.exit_code
            yield task_pb2.TailLogsResponse(end=end)

    async def _heartbeats(
        self, frames: AsyncIterator[task_pb2.TailLogsResponse]
    ) -> AsyncIterator[task_pb2.TailLogsResponse]:
        """The frames, with a heartbeat whenever none came for a heartbeat interval."""
        upcoming = asyncio.ensure_future(anext(frames))
        try:
            while True:
                if not (await asyncio.wait({upcoming}, timeout=self._heartbeat))[0]:
                    yield task_pb2.TailLogsResponse(heartbeat=_now())
                    continue
                try:
                    frame = upcoming.result()
                except StopAsyncIteration:
                    return
                yield frame
                upcoming = asyncio.ensure_future(anext(frames))
        finally:
            upcoming.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await upcoming
            if isinstance(frames, AsyncGenerator):  # each is, here; an iterator of another kind holds nothing
                await frames.aclose()

    async def _standard(
        self, task: TaskRecord, cursors: list[task_pb2.LogCursor], tail_lines: int, follow: bool
    ) -> AsyncIterator[task_pb2.TailLogsResponse]:
        starts = []
        for cursor in cursors:
            name = _STREAM_NAMES[cursor.stream]
            offset = self._logs.tail_offset(task.id, name, tail_lines) if tail_lines else cursor.offset
            starts.append((cursor.stream, name, offset))
        if not follow:
            for stream, name, offset in starts:
                while pieces := self._logs.read(task.id, name, offset):
                    for piece in pieces:
                        yield _frame(stream, piece)
                    offset = pieces[-1].end
            return
        # One loop reads every stream at the follower's own pace and waits on the streams' shared signals: a slow
        # follower holds no memory and delays nobody, and the newest bytes come from the store's shared memory.
        kinds = {name: stream for stream, name, _ in starts}
        ended = lambda: task.id not in self._tasks.active  # noqa: E731
        offsets = {name: offset for _, name, offset in starts}
        async for name, pieces in self._logs.follow(task.id, offsets, ended, self._heartbeat):
            if not pieces:
                yield task_pb2.TailLogsResponse(heartbeat=_now())
            for piece in pieces:
                yield _frame(kinds[name], piece)


def _frame(stream: task_pb2.LogStream.ValueType, piece: Piece) -> task_pb2.TailLogsResponse:
    chunk = task_pb2.LogChunk(stream=stream, offset=piece.offset, data=piece.data)
    chunk.time.FromNanoseconds(piece.time_ns)
    return task_pb2.TailLogsResponse(chunk=chunk)


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp
