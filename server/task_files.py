"""A task's files: its live working directory (asked of its agent) while it runs, its outputs once it ended."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from simplane._api.v1 import task_pb2
from simplane._protocol.task_outputs import outputs_prefix
from simplane.server import errors, task_states
from simplane.server.agents import AgentHub, AgentSession
from simplane.server.file_store import FileStore
from simplane.server.task_record import TaskRecord

L = task_pb2.LogStream


class TaskFiles:
    def __init__(self, hub: AgentHub, files: FileStore) -> None:
        self._hub = hub
        self._files = files

    def _live_session(self, task: TaskRecord) -> AgentSession | None:
        if task.status not in task_states.ON_MACHINE:
            return None
        session = self._hub.session(task.machine_id)
        if session is None:
            raise errors.Unavailable(f"machine {task.machine_id} running task {task.id} is not connected")
        return session

    async def list(self, task: TaskRecord) -> task_pb2.ListTaskFilesResponse:
        session = self._live_session(task)
        if session is not None:
            listing = await session.list_files(task.id)
            if listing.error:
                raise errors.FailedPrecondition(f"task {task.id}: {listing.error}")
            return task_pb2.ListTaskFilesResponse(files=listing.files)
        if not task.terminal:
            return task_pb2.ListTaskFilesResponse()
        prefix = outputs_prefix(task.id)
        response = task_pb2.ListTaskFilesResponse(outputs=True)
        for stored in await self._files.list(task.owner, prefix):
            entry = response.files.add(path=stored.path[len(prefix) :], size=stored.size)
            entry.modify_time.FromNanoseconds(int(stored.created_at * 1e9))
        return response

    async def tail(
        self, task: TaskRecord, path: str, offset: int, tail_lines: int, follow: bool
    ) -> AsyncIterator[task_pb2.TailLogsResponse]:
        session = self._live_session(task)
        if session is not None:
            try:
                async for frame in session.read_file(task.id, path, offset, tail_lines, follow):
                    if frame.data:
                        chunk = task_pb2.LogChunk(stream=L.LOG_STREAM_FILE, offset=frame.offset, data=frame.data)
                        chunk.time.FromNanoseconds(frame.time_ns)
                        yield task_pb2.TailLogsResponse(chunk=chunk)
                    offset, tail_lines = frame.offset + len(frame.data), 0
                return
            except errors.NotFound:
                if not task.terminal:
                    raise
                # The task ended and its agent let it go before this reader caught up: the rest of the file
                # is in the task's outputs, stored before its end was.
        elif not task.terminal:
            raise errors.FailedPrecondition(f"task {task.id} has not started: its files don't exist yet")
        stored = outputs_prefix(task.id) + path
        if not [f for f in await self._files.list(task.owner, stored) if f.path == stored]:
            raise errors.NotFound(f"file {path!r} of task {task.id} not found")
        if tail_lines:
            offset = self._files.tail_offset(task.owner, stored, tail_lines)
        while True:
            data, size = await asyncio.to_thread(self._files.read_range, task.owner, stored, offset)
            if data:
                chunk = task_pb2.LogChunk(stream=L.LOG_STREAM_FILE, offset=offset, data=data)
                chunk.time.GetCurrentTime()
                yield task_pb2.TailLogsResponse(chunk=chunk)
                offset += len(data)
            if offset >= size:
                return
