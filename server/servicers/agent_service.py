"""AgentService: machines joining, the agents' stream (assignments down; updates and output up), inputs and
outputs. A join token can only join; each other call takes the machine's own credential and reaches only the tasks
assigned to that machine."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from simplane._api.v1 import agent_pb2, agent_pb2_grpc, storage_pb2
from simplane._protocol.task_outputs import outputs_prefix
from simplane.server import errors
from simplane.server.agents import ACKS, AgentHub, AgentSession
from simplane.server.auth import AGENT_KEY, MACHINE_KEY, Authenticator, Caller
from simplane.server.file_store import FileStore
from simplane.server.log_store import LogStore
from simplane.server.machine_groups import MachineGroups
from simplane.server.servicers.authorization import AuthorizedServicer, require_kind
from simplane.server.status import streaming, unary
from simplane.server.task_record import TaskRecord
from simplane.server.tasks import TaskRegistry

_STREAMS = {1: "stdout", 2: "stderr"}


class AgentService(AuthorizedServicer, agent_pb2_grpc.AgentServiceServicer):
    key_kinds = frozenset({AGENT_KEY, MACHINE_KEY})

    def __init__(
        self,
        authenticator: Authenticator,
        tasks: TaskRegistry,
        hub: AgentHub,
        logs: LogStore,
        files: FileStore,
        groups: MachineGroups,
    ) -> None:
        super().__init__(authenticator)
        self._tasks = tasks
        self._hub = hub
        self._logs = logs
        self._files = files
        self._groups = groups

    @unary
    async def Join(self, request, context, caller: Caller) -> agent_pb2.JoinResponse:
        require_kind(caller, AGENT_KEY)
        if request.machine_group != caller.machine_group:
            raise errors.PermissionDenied(
                f"this agent token joins machine group {caller.machine_group!r}, not {request.machine_group!r}"
            )
        machine_id, credential = await self._groups.join(caller, request.hostname)
        return agent_pb2.JoinResponse(machine_id=machine_id, credential=credential)

    @streaming
    async def Connect(self, request_iterator, context, caller: Caller) -> AsyncIterator[agent_pb2.ConnectResponse]:
        require_kind(caller, MACHINE_KEY)
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("message") != "hello":
            raise errors.InvalidArgument("hello", "the first message on the stream must be an AgentHello")
        hello = first.hello
        if hello.agent_id != caller.machine_id:
            raise errors.PermissionDenied(
                f"hello.agent_id must be this credential's machine {caller.machine_id!r}, got {hello.agent_id!r}"
            )
        if hello.machine_group != caller.machine_group:
            raise errors.PermissionDenied(
                f"machine {caller.machine_id} belongs to machine group {caller.machine_group!r}, "
                f"not {hello.machine_group!r}"
            )
        session = AgentSession(
            agent_id=hello.agent_id,
            machine_group=hello.machine_group,
            hostname=hello.hostname,
            slots=hello.slots or 1,
        )
        self._hub.attach(session)
        reader = None
        try:
            yield agent_pb2.ConnectResponse(welcome=await self._tasks.welcome(session, list(hello.held_tasks)))
            self._tasks.agent_ready(session)
            reader = asyncio.create_task(self._read(session, request_iterator))
            while (message := await session.outbox.get()) is not None:
                if message is ACKS:
                    for ack in session.take_acks():
                        yield ack
                else:
                    yield message
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            if self._hub.detach(session):
                self._tasks.machine_disconnected(session.agent_id)

    async def _read(self, session: AgentSession, messages: AsyncIterator[agent_pb2.ConnectRequest]) -> None:
        try:
            async for message in messages:
                session.last_seen = time.monotonic()
                kind = message.WhichOneof("message")
                if kind == "task_output":
                    self._store_output(session, message.task_output)
                elif kind == "task_update":
                    self._apply_update(session, message.task_update)
                elif kind == "heartbeat":
                    beat = message.heartbeat
                    session.load = beat.load
                    session.memory_total_bytes = beat.memory_total_bytes
                    session.memory_used_bytes = beat.memory_used_bytes
                elif kind == "file_listing":
                    session.deliver(message.file_listing.request_id, message.file_listing)
                elif kind == "file_data":
                    session.deliver(message.file_data.request_id, message.file_data)
        finally:
            session.close()

    def _store_output(self, session: AgentSession, output: agent_pb2.TaskOutput) -> None:
        chunk = output.chunk
        name = _STREAMS.get(chunk.stream)
        if name is None:
            return
        task = self._tasks.active.get(output.task_id)
        if task is not None and task.machine_id == session.agent_id and task.attempt == output.attempt:
            size = self._logs.append(output.task_id, name, chunk.offset, chunk.data, chunk.time.ToNanoseconds())
            self._tasks.output_stored(task, size >= chunk.offset + len(chunk.data))
        else:
            # Not a task of this machine's now: one that ended (its output was all stored before its end), or one
            # declared lost or given to another attempt, whose output nobody will read. Nothing to store; the
            # acknowledgement lets the agent drop it.
            size = chunk.offset + len(chunk.data)
        session.ack_output(output.task_id, chunk.stream, size)

    def _apply_update(self, session: AgentSession, update: agent_pb2.TaskUpdate) -> None:
        stored = self._tasks.apply_update(session.agent_id, update)
        if stored is None:
            session.ack_update(update.task_id, update.seq)
            return

        def acknowledge(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is None:
                session.ack_update(update.task_id, update.seq)

        stored.add_done_callback(acknowledge)

    def _assigned_task(self, caller: Caller, task_id: str) -> TaskRecord:
        """The active task `task_id` if it is assigned to the calling machine; any other is not found."""
        task = self._tasks.active.get(task_id)
        if task is None or task.machine_id != caller.machine_id:
            raise errors.NotFound(f"task {task_id!r} is not assigned to machine {caller.machine_id}")
        return task

    @streaming
    async def DownloadInputs(self, request, context, caller: Caller) -> AsyncIterator[agent_pb2.DownloadInputsResponse]:
        require_kind(caller, MACHINE_KEY)
        task = self._assigned_task(caller, request.task_id)
        if not task.inputs:
            return
        files = await self._files.list(task.owner, task.inputs)
        async for chunk in self._files.chunks(task.owner, files, task.inputs):
            yield agent_pb2.DownloadInputsResponse(chunk=chunk)

    @unary
    async def UploadOutputs(self, request_iterator, context, caller: Caller) -> agent_pb2.UploadOutputsResponse:
        require_kind(caller, MACHINE_KEY)
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            return agent_pb2.UploadOutputsResponse()
        task = self._assigned_task(caller, first.task_id)

        async def chunks() -> AsyncIterator[storage_pb2.FileChunk]:
            if first.HasField("chunk"):
                yield first.chunk
            async for message in messages:
                yield message.chunk

        files, size = await self._files.receive(task.owner, outputs_prefix(task.id), chunks())
        return agent_pb2.UploadOutputsResponse(files=files, bytes=size)
