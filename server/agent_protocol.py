"""The agent protocol: the messages of AgentService.Connect, decoded into calls on the task core and the hub, and
the core's commands encoded for the agent. The one server module that reads or builds Connect's messages.

A conversation opens with the agent's hello (naming the machine of its credential and the tasks it still holds)
and the server's welcome (what the server has stored of each). Then both ways at once: assignments, kills, file
requests and acknowledgements go down as the core gives them; heartbeats, task reports, output and file replies
come up, read by a task of their own.

An error ends the conversation and is logged once, naming the machine: a refusal (a domain error, such as a
message the edge refused) here, as a warning; anything else by status.py, which logs what is not a domain error,
with the machine in a note of its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from simplane._api.v1 import agent_pb2, task_pb2
from simplane.server import errors
from simplane.server.agent_messages import (
    Assignment,
    CancelRead,
    Command,
    FileFrame,
    FileListing,
    KillOrder,
    ListFiles,
    OutputAck,
    ReadFile,
    ReportAck,
    Resume,
    TaskReport,
)
from simplane.server.agents import AgentHub, AgentSession
from simplane.server.caller import Caller
from simplane.server.tasks import TaskRegistry

log = logging.getLogger(__name__)

_STREAM_NAMES = {task_pb2.LOG_STREAM_STDOUT: "stdout", task_pb2.LOG_STREAM_STDERR: "stderr"}
_STREAMS = {name: stream for stream, name in _STREAM_NAMES.items()}


class AgentProtocol:
    """Connect's conversations, one per connected machine.

    `answered` is the exception the edge raises once it has ended the call itself with a status: grpc's
    AbortError, raised where status.py refuses a message of the stream (read here by the reader task), with the
    domain error that says why as its cause (`raise ... from`). It is passed in, so that this module imports no
    grpc, and it lets a refusal be told from a failure: a refusal is logged as a warning with its reason, a
    failure with its traceback.

    A server that stops ends every conversation quietly: ServerApp.stop closes the hub's sessions before it stops
    the gRPC server, so each conversation ends as finished, its reader is cancelled, and nothing is logged (a call
    grpc cancels ends with CancelledError, which is not logged either).
    """

    def __init__(self, tasks: TaskRegistry, hub: AgentHub, *, answered: type[Exception]) -> None:
        self._tasks = tasks
        self._hub = hub
        self._answered = answered

    async def converse(
        self, machine: Caller, requests: AsyncIterator[agent_pb2.ConnectRequest]
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        """The server's side of one Connect stream of the machine holding the credential `machine`."""
        try:
            async for response in self._converse(machine, requests):
                yield response
        except Exception as error:
            self._log_failure(machine.machine_id, error, raised=True)
            raise

    async def _converse(
        self, machine: Caller, requests: AsyncIterator[agent_pb2.ConnectRequest]
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        hello = await _hello(machine, requests)
        session = AgentSession(
            agent_id=hello.agent_id,
            machine_group=hello.machine_group,
            hostname=hello.hostname,
            slots=hello.slots or 1,
        )
        self._hub.attach(session)
        reader: asyncio.Task[None] | None = None
        finished = False
        try:
            resumes = await self._tasks.agent_back(session, {held.task_id for held in hello.held_tasks})
            yield agent_pb2.ConnectResponse(welcome=self._welcome(session, resumes))
            self._tasks.agent_ready(session)
            reader = asyncio.create_task(self._read(session, requests))
            async for command in session.commands():
                yield _encode(command)
            finished = True  # the session closed: the agent's side ended (or failed), or the hub let it go
        finally:
            failure = await _stop(reader)
            if self._hub.detach(session):
                self._tasks.machine_disconnected(session.agent_id)
            if failure is not None and not finished:
                self._log_failure(session.agent_id, failure, raised=False)  # the conversation ended for another reason
        if failure is not None:
            raise failure

    def _log_failure(self, machine_id: str, error: BaseException, *, raised: bool) -> None:
        """Says once why a machine's stream ended: a refusal here; an unexpected error that is `raised` on to
        status.py is logged there, and only gets the machine named in a note."""
        refusal = self._refusal(error)
        if refusal is not None:
            log.warning("the stream of machine %s ended: %s", machine_id, refusal)
        elif raised:
            error.add_note(f"on the agent stream of machine {machine_id}")
        else:
            log.error("the stream of machine %s failed", machine_id, exc_info=error)

    def _refusal(self, error: BaseException) -> str | None:
        """Why the stream was refused, if it was: a domain error, or the edge's refusal of a message."""
        if isinstance(error, errors.DomainError):
            return error.message
        if isinstance(error, self._answered):
            return error.__cause__.message if isinstance(error.__cause__, errors.DomainError) else str(error)
        return None

    def _welcome(self, session: AgentSession, resumes: Sequence[Resume]) -> agent_pb2.AgentWelcome:
        welcome = agent_pb2.AgentWelcome(machine_id=session.agent_id)
        welcome.heartbeat_interval.FromNanoseconds(int(self._hub.heartbeat_interval * 1e9))
        welcome.resumes.extend(
            agent_pb2.TaskResume(
                task_id=resume.task_id,
                update_seq=resume.update_seq,
                stdout_offset=resume.stdout_offset,
                stderr_offset=resume.stderr_offset,
            )
            for resume in resumes
        )
        return welcome

    async def _read(self, session: AgentSession, requests: AsyncIterator[agent_pb2.ConnectRequest]) -> None:
        """Applies what the agent sends until its side of the stream ends; then (or on an error) closes the
        session, which ends the conversation."""
        try:
            async for request in requests:
                session.heard()
                kind = request.WhichOneof("message")
                if kind == "task_output":
                    self._store_output(session, request.task_output)
                elif kind == "task_update":
                    self._apply_report(session, request.task_update)
                elif kind == "heartbeat":
                    beat = request.heartbeat
                    session.load = beat.load
                    session.memory_total_bytes = beat.memory_total_bytes
                    session.memory_used_bytes = beat.memory_used_bytes
                elif kind == "file_listing":
                    listing = request.file_listing
                    session.deliver(listing.request_id, FileListing(list(listing.files), listing.error))
                elif kind == "file_data":
                    data = request.file_data
                    frame = FileFrame(data.offset, data.data, data.time.ToNanoseconds(), data.eof, data.error)
                    session.deliver(data.request_id, frame)
        finally:
            session.close()

    def _store_output(self, session: AgentSession, output: agent_pb2.TaskOutput) -> None:
        chunk = output.chunk
        stream = _STREAM_NAMES.get(chunk.stream)
        if stream is None:
            return
        stored = self._tasks.store_output(
            session.agent_id,
            output.task_id,
            output.attempt,
            stream,
            chunk.offset,
            chunk.data,
            chunk.time.ToNanoseconds(),
        )
        session.ack_output(output.task_id, stream, stored)

    def _apply_report(self, session: AgentSession, update: agent_pb2.TaskUpdate) -> None:
        stored = self._tasks.apply_report(session.agent_id, _report_of(update))
        if stored is None:
            session.ack_report(update.task_id, update.seq)
            return

        def acknowledge(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is None:
                session.ack_report(update.task_id, update.seq)

        stored.add_done_callback(acknowledge)


async def _hello(machine: Caller, requests: AsyncIterator[agent_pb2.ConnectRequest]) -> agent_pb2.AgentHello:
    """The stream's first message, which must be a hello naming the credential's machine and its group."""
    first = await anext(aiter(requests), None)
    if first is None or first.WhichOneof("message") != "hello":
        raise errors.InvalidArgument("hello", "the first message on the stream must be an AgentHello")
    hello = first.hello
    if hello.agent_id != machine.machine_id:
        raise errors.PermissionDenied(
            f"hello.agent_id must be this credential's machine {machine.machine_id!r}, got {hello.agent_id!r}"
        )
    if hello.machine_group != machine.machine_group:
        raise errors.PermissionDenied(
            f"machine {machine.machine_id} belongs to machine group {machine.machine_group!r}, "
            f"not {hello.machine_group!r}"
        )
    return hello


def _report_of(update: agent_pb2.TaskUpdate) -> TaskReport:
    return TaskReport(
        task_id=update.task_id,
        attempt=update.attempt,
        seq=update.seq,
        status=update.status,
        time=update.time.ToNanoseconds() / 1e9 if update.HasField("time") else None,
        exit_code=update.exit_code if update.HasField("exit_code") else None,
        error=update.error,
        stdout_size=update.stdout_size,
        stderr_size=update.stderr_size,
        input_bytes=update.input_bytes,
        input_files=update.input_files,
        output_bytes=update.output_bytes,
        output_files=update.output_files,
    )


def _encode(command: Command) -> agent_pb2.ConnectResponse:
    match command:
        case Assignment():
            return agent_pb2.ConnectResponse(
                assignment=agent_pb2.TaskAssignment(
                    task_id=command.task_id,
                    attempt=command.attempt,
                    command=command.command,
                    env=command.env,
                    cpus=command.cpus,
                    has_inputs=command.has_inputs,
                )
            )
        case KillOrder():
            status = task_pb2.TaskStatus.ValueType(command.status)
            kill = agent_pb2.TaskKill(task_id=command.task_id, status=status, reason=command.reason)
            kill.grace_period.FromNanoseconds(int(command.grace * 1e9))
            return agent_pb2.ConnectResponse(kill=kill)
        case OutputAck():
            ack = agent_pb2.OutputAck(task_id=command.task_id, stream=_STREAMS[command.stream], offset=command.offset)
            return agent_pb2.ConnectResponse(output_ack=ack)
        case ReportAck():
            return agent_pb2.ConnectResponse(
                update_ack=agent_pb2.TaskUpdateAck(task_id=command.task_id, seq=command.seq)
            )
        case ListFiles():
            return agent_pb2.ConnectResponse(
                list_files=agent_pb2.ListFilesCommand(request_id=command.request_id, task_id=command.task_id)
            )
        case ReadFile():
            return agent_pb2.ConnectResponse(
                read_file=agent_pb2.ReadFileCommand(
                    request_id=command.request_id,
                    task_id=command.task_id,
                    path=command.path,
                    offset=command.offset,
                    tail_lines=command.tail_lines,
                    follow=command.follow,
                )
            )
        case CancelRead():
            return agent_pb2.ConnectResponse(cancel_read=agent_pb2.CancelReadCommand(request_id=command.request_id))


async def _stop(reader: asyncio.Task[None] | None) -> BaseException | None:
    """Stops reading the agent's messages; returns the error reading ended with, if any."""
    if reader is None:
        return None
    reader.cancel()
    await asyncio.wait([reader])
    return None if reader.cancelled() else reader.exception()
