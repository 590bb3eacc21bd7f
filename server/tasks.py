"""The task core: submitting, reading, killing, and every status change a task goes through.

The active (not yet ended) tasks live in memory, where the scheduler and the agents' streams work on them; every
change is recorded through the event stream, which commits it before anyone is told. Ended tasks are read from
the database.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlmodel import Session, col

from simplane._api.v1 import task_pb2
from simplane._protocol.task_outputs import task_id_of
from simplane.server import disk_space, errors, request_limits, task_states
from simplane.server.agent_messages import Assignment, KillOrder, Resume, TaskReport
from simplane.server.agents import AgentHub, AgentSession
from simplane.server.caller import Caller
from simplane.server.event_stream import Change, EventStream
from simplane.server.file_store import FileStore, check_path
from simplane.server.ids import new_task_id
from simplane.server.log_store import LogStore
from simplane.server.machine_groups import LOCAL, MachineGroups
from simplane.server.scheduler import Scheduler
from simplane.server.store.database import Database
from simplane.server.store.models import TaskRow
from simplane.server.task_record import TaskRecord

log = logging.getLogger(__name__)

DEFAULT_GRACE = 10.0
TTL_GRACE = 5.0
DEFAULT_PAGE_SIZE = 50


class TaskRegistry:
    def __init__(
        self,
        database: Database,
        events: EventStream,
        scheduler: Scheduler,
        hub: AgentHub,
        logs: LogStore,
        groups: MachineGroups,
        files: FileStore,
        *,
        max_active_tasks: int,
    ) -> None:
        self._files = files
        self._database = database
        self.events = events
        self._scheduler = scheduler
        self._hub = hub
        self._logs = logs
        self._groups = groups
        self._max_active_tasks = max_active_tasks
        self.active: dict[str, TaskRecord] = {}
        self._kills: dict[str, KillOrder] = {}  # sent to (or owed to) the task's agent
        self._expiries: dict[str, asyncio.TimerHandle] = {}
        self._active_per_owner: dict[str, int] = {}
        self._end_waiters: dict[str, list[asyncio.Future[TaskRecord]]] = {}
        self._ending: dict[str, TaskRecord] = {}  # ended, but the end is not stored yet
        self._background: set[asyncio.Future[None]] = set()
        # Submits under way by (owner, request_id): a concurrent repeat waits for the first one's task.
        self._submitting: dict[tuple[str, str], asyncio.Future[task_pb2.Task]] = {}
        events.on_refused = self._change_refused
        self._unreachable: dict[str, str] = {}  # machine id -> the warning its tasks carry

    # -- startup -------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Takes the active tasks back from the database (before serving)."""
        rows = self._database.call(
            lambda s: s.execute(select(TaskRow).where(col(TaskRow.status).not_in(task_states.TERMINAL))).scalars().all()
        )
        for row in rows:
            task = TaskRecord.from_row(row)
            self._track(task)
            self.events.latest[task.id] = Change(task.revision, task.to_proto())
            if task.status in task_states.ON_MACHINE:
                self._hub.expect(task.machine_id, task.machine_group)
            else:
                self._scheduler.enqueue(task)

    def start_timers(self) -> None:
        for task in self.active.values():
            self._arm_expiry(task)

    # -- user calls ----------------------------------------------------------------------------------------

    async def submit(self, caller: Caller, request: task_pb2.SubmitTaskRequest) -> task_pb2.Task:
        """Creates a task; with a request_id, a repeat of an earlier submit of the same user returns the task
        that one made. The task is queued only once its row is stored, so a submit that fails leaves nothing."""
        self._logs.space.require()  # a full data dir could store neither the task nor its output
        request_id = request.request_id
        if not request_id:
            return await self._create(caller, request)
        key = (caller.user, request_id)
        while (earlier := self._submitting.get(key)) is not None:
            try:
                return await asyncio.shield(earlier)
            except Exception:  # the earlier submit failed: this one tries again
                continue
        submitting: asyncio.Future[task_pb2.Task] = asyncio.get_running_loop().create_future()
        self._submitting[key] = submitting
        try:
            try:
                task = await self._create(caller, request)
            except errors.FailedPrecondition:
                # The database refused the row. A request id is almost always new, so it is looked up only
                # now: the unique index on (owner, request_id) refuses a repeat of a submit it already holds.
                row = await self._database.run(_task_of_request, caller.user, request_id)
                if row is None:
                    raise
                made = self.active.get(row.id) or self._ending.get(row.id)
                if made is None:
                    made = TaskRecord.from_row(row)
                    if not made.terminal:  # stored, though its submit was told it failed: queue it now
                        self.events.latest[made.id] = Change(made.revision, made.to_proto())  # for snapshots
                        self._queue(made)
                task = made.to_proto()
        except Exception as error:
            submitting.set_exception(error)
            submitting.exception()  # retrieved: a failure nobody waits for is no warning
            raise
        finally:
            del self._submitting[key]
        submitting.set_result(task)
        return task

    async def _create(self, caller: Caller, request: task_pb2.SubmitTaskRequest) -> task_pb2.Task:
        command = list(request.command)
        ttl = request.time_to_live.seconds + request.time_to_live.nanos / 1e9
        group = request.machine_group or LOCAL
        self._groups.require(group)
        if self._active_per_owner.get(caller.user, 0) >= self._max_active_tasks:
            raise errors.ResourceExhausted(
                f"user {caller.user} already has {self._max_active_tasks} active tasks, the most allowed"
            )
        input_bytes = input_files = 0
        if request.inputs:
            check_path("inputs", request.inputs, prefix=True)
            stored = await self._files.list(caller.user, request.inputs)
            if not stored:
                raise errors.NotFound(f"inputs: no files under {request.inputs!r}")
            input_files, input_bytes = len(stored), sum(f.size for f in stored)
        now = time.time()
        task = TaskRecord(
            id=new_task_id(),
            owner=caller.user,
            machine_group=group,
            command=command,
            created_at=now,
            updated_at=now,
            name=request.name,
            project=request.project,
            env=dict(request.env),
            time_to_live=ttl,
            cpus=request.cpus or 1,
            inputs=request.inputs,
            input_bytes=input_bytes,
            input_files=input_files,
            request_id=request.request_id or None,
        )
        task.history.append([task_states.SUBMITTED, now, ""])
        task.move(task_states.QUEUED, now)
        recorded = self.events.record(task, new=True)
        await recorded.committed
        self._queue(task)
        return recorded.task

    def _queue(self, task: TaskRecord) -> None:
        """Takes a stored, queued task into memory and dispatches it."""
        self._track(task)
        self._scheduler.enqueue(task)
        self._arm_expiry(task)
        self._dispatch(task.machine_group)

    async def get(self, caller: Caller, task_id: str) -> TaskRecord:
        if not task_id:
            raise errors.InvalidArgument("task_id", "must not be empty")
        task = self.active.get(task_id) or self._ending.get(task_id)
        if task is None:
            row = await self._database.run(lambda s: s.get(TaskRow, task_id))
            task = TaskRecord.from_row(row) if row is not None else None
        if task is None or task.owner != caller.user:
            raise errors.NotFound(f"task {task_id!r} not found")
        return task

    async def check_download(self, caller: Caller, prefix: str) -> None:
        """Refuses a download of the caller's stored files under the folder `prefix` if it lies in a task's folder
        (its outputs) and the task is not the caller's, or has not ended: its outputs are stored as it ends."""
        task_id = task_id_of(prefix)
        if task_id is None:
            return
        task = await self.get(caller, task_id)
        if not task.terminal:
            raise errors.FailedPrecondition(f"task {task.id} has not ended: its outputs are stored as it ends")

    async def list(self, caller: Caller, request: task_pb2.ListTasksRequest) -> task_pb2.ListTasksResponse:
        size = request.page_size or DEFAULT_PAGE_SIZE
        query = select(TaskRow).where(col(TaskRow.owner) == caller.user)
        if request.statuses:
            query = query.where(col(TaskRow.status).in_(list(request.statuses)))
        if request.project:
            query = query.where(col(TaskRow.project) == request.project)
        if request.machine_group:
            query = query.where(col(TaskRow.machine_group) == request.machine_group)
        if request.query:
            text = request.query.strip()
            query = query.where(
                or_(
                    col(TaskRow.id).startswith(text, autoescape=True),
                    col(TaskRow.name).icontains(text, autoescape=True),
                )
            )
        if request.HasField("created_after"):
            query = query.where(col(TaskRow.created_at) >= request.created_after.ToNanoseconds() / 1e9)
        if request.HasField("created_before"):
            query = query.where(col(TaskRow.created_at) < request.created_before.ToNanoseconds() / 1e9)
        if request.page_token:
            query = query.where(col(TaskRow.id) < _decode_page_token(request.page_token))
        query = query.order_by(col(TaskRow.id).desc()).limit(size + 1)
        rows = await self._database.run(lambda s: list(s.execute(query).scalars()))
        tasks = [self.active.get(row.id) or TaskRecord.from_row(row) for row in rows[:size]]
        response = task_pb2.ListTasksResponse(tasks=[t.to_proto() for t in tasks])
        if len(rows) > size:
            response.next_page_token = base64.urlsafe_b64encode(tasks[-1].id.encode()).decode()
        return response

    async def kill(self, caller: Caller, task_id: str, grace: float | None) -> task_pb2.Task:
        task = await self.get(caller, task_id)
        if task.terminal:
            raise errors.FailedPrecondition(f"task {task_id} already ended ({task_states.name(task.status)})")
        await self._stop(task, task_states.KILLED, "killed by user", DEFAULT_GRACE if grace is None else grace)
        return task.to_proto()

    async def stop_group(self, machine_group: str, reason: str, *, grace: float, timeout: float) -> int:
        """Kills every task on the group's machines as KILLED with `reason`, and waits at most `timeout` for their
        ends (after their output and outputs) to be stored; returns how many did not end in time. The machines
        take no new task meanwhile: queued tasks stay queued."""
        for session in self._hub.sessions.values():
            if session.machine_group == machine_group:
                self._scheduler.remove_machine(session.agent_id)
        stopping = [
            t for t in self.active.values() if t.machine_group == machine_group and t.status in task_states.ON_MACHINE
        ]
        for task in stopping:
            await self._stop(task, task_states.KILLED, reason, grace)
        if not stopping:
            return 0
        _done, pending = await asyncio.wait(
            [asyncio.ensure_future(self.ended(t.id)) for t in stopping], timeout=timeout
        )
        for waiter in pending:
            waiter.cancel()
        return len(pending)

    async def _stop(self, task: TaskRecord, status: int, reason: str, grace: float) -> None:
        if task.id not in self.active or task.terminal:
            return
        if task.status in task_states.ON_MACHINE:
            kill = KillOrder(task.id, status, reason, grace)
            self._kills[task.id] = kill
            session = self._hub.session(task.machine_id)
            if session is not None:
                session.send(kill)
            return
        self._scheduler.dequeue(task)
        task.error = reason
        task.move(status, time.time(), reason)
        await self._finish(task)

    # -- agents --------------------------------------------------------------------------------------------

    async def agent_back(self, session: AgentSession, held_ids: set[str]) -> Sequence[Resume]:
        """Settles what a (re)connecting agent holds against what the server expects of it; returns what the
        server has stored of each held task it still runs there."""
        resumes = []
        for task_id in held_ids:
            # A held task the server no longer runs here (it ended, or was declared lost) gets no resume: the
            # agent then stops and drops it. An ended task's output was all stored before its end was.
            task = self.active.get(task_id)
            if task is None or task.machine_id != session.agent_id:
                continue
            resumes.append(
                Resume(task.id, task.update_seq, self._logs.size(task.id, "stdout"), self._logs.size(task.id, "stderr"))
            )
        mine = [t for t in self.active.values() if t.machine_id == session.agent_id]
        warning = self._unreachable.pop(session.agent_id, None)
        running = []
        for task in mine:
            if warning is not None and task.warning == warning:
                task.warning = ""
                self.events.record(task)
            if task.id in held_ids:
                running.append(task)
            elif task.status == task_states.PREPARING:
                running.append(task)
                session.send(Assignment.of(task))
            else:
                await self._lose(task, f"machine {session.agent_id} restarted and no longer runs the task")
        self._scheduler.add_machine(session.agent_id, session.machine_group, session.slots, running)
        for task in running:
            kill = self._kills.get(task.id)
            if kill is not None:
                session.send(kill)
        return resumes

    def agent_ready(self, session: AgentSession) -> None:
        self._dispatch(session.machine_group)

    def apply_report(self, machine_id: str, report: TaskReport) -> asyncio.Future[None] | None:
        """Records an agent's report; returns what to await before acknowledging it (None: ack at once).

        A report that comes before the output written ahead of it is stored (the data dir was full) is not
        recorded: the future returned is cancelled, so it is not acknowledged, and the agent sends it again
        after that output.
        """
        task = self.active.get(report.task_id)
        if task is None or task.machine_id != machine_id or task.attempt != report.attempt:
            return None
        if report.seq <= task.update_seq:
            return None
        if self._output_missing(task.id, "stdout", report.stdout_size) or self._output_missing(
            task.id, "stderr", report.stderr_size
        ):
            refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            refused.cancel()
            return refused
        task.update_seq = report.seq
        if not task_states.advances(task.status, report.status):
            return None
        at = time.time() if report.time is None else report.time
        task.move(report.status, max(at, task.updated_at), report.error)
        if report.exit_code is not None:
            task.exit_code = report.exit_code
        if report.error:
            task.error = report.error
        if report.status in (task_states.FINALIZING, *task_states.TERMINAL):
            task.stdout_size, task.stderr_size = report.stdout_size, report.stderr_size
            task.output_bytes, task.output_files = report.output_bytes, report.output_files
        if report.input_files:
            task.input_bytes, task.input_files = report.input_bytes, report.input_files
        if task.terminal:
            return asyncio.ensure_future(self._finish(task))
        return self.events.record(task).committed

    def _output_missing(self, task_id: str, stream: str, size: int) -> bool:
        """Whether less than `size` bytes of the stream are stored (a task that wrote nothing costs no file)."""
        return size > 0 and size > self._logs.size(task_id, stream)

    def store_output(
        self, machine_id: str, task_id: str, attempt: int, stream: str, offset: int, data: bytes, time_ns: int
    ) -> int:
        """Stores a chunk of a task's output from its machine; returns how far the stream is stored (to acknowledge).

        Output of a task that is not this machine's now is not stored: one that ended (its output was all stored
        before its end), or one declared lost or given to another attempt, whose output nobody will read. The
        acknowledgement then lets the agent drop it.
        """
        task = self.active.get(task_id)
        if task is None or task.machine_id != machine_id or task.attempt != attempt:
            return offset + len(data)
        size = self._logs.append(task_id, stream, offset, data, time_ns)
        self._output_stored(task, size >= offset + len(data))
        return size

    def assigned_task(self, machine_id: str, task_id: str) -> TaskRecord:
        """The active task `task_id` if it is assigned to the machine; any other is not found."""
        task = self.active.get(task_id)
        if task is None or task.machine_id != machine_id:
            raise errors.NotFound(f"task {task_id!r} is not assigned to machine {machine_id}")
        return task

    def _output_stored(self, task: TaskRecord, complete: bool) -> None:
        """Shows on the task, while the data dir is full, that its output waits on its machine; clears it after."""
        if not complete and self._logs.space.full and not task.warning:
            task.warning = disk_space.OUTPUT_HELD
        elif complete and task.warning == disk_space.OUTPUT_HELD:
            task.warning = ""
        else:
            return
        self.events.record(task)

    def _release(self, task: TaskRecord) -> None:
        self._scheduler.release(task)
        self.active.pop(task.id, None)
        self._kills.pop(task.id, None)
        self._active_per_owner[task.owner] -= 1
        expiry = self._expiries.pop(task.id, None)
        if expiry is not None:
            expiry.cancel()
        self._logs.close_task(task.id)

    async def _finish(self, task: TaskRecord) -> None:
        self._release(task)
        task.warning = ""  # an ended task is held back by nothing
        self._ending[task.id] = task
        recorded = self.events.record(task)
        self._dispatch(task.machine_group)
        try:
            await recorded.committed
        except Exception as error:
            for waiter in self._end_waiters.pop(task.id, ()):
                if not waiter.done():
                    waiter.set_exception(error)
            raise
        finally:
            self._ending.pop(task.id, None)
        for waiter in self._end_waiters.pop(task.id, ()):
            if not waiter.done():
                waiter.set_result(task)

    async def ended(self, task_id: str) -> TaskRecord:
        """The task once it has ended (and that is stored)."""
        if task_id in self.active or task_id in self._ending:
            waiter: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
            self._end_waiters.setdefault(task_id, []).append(waiter)
            try:
                return await waiter
            finally:
                waiters = self._end_waiters.get(task_id)
                if waiters and waiter in waiters:
                    waiters.remove(waiter)
        row = await self._database.run(lambda s: s.get(TaskRow, task_id))
        return TaskRecord.from_row(row)

    async def _lose(self, task: TaskRecord, reason: str) -> None:
        if task.id not in self.active or task.terminal:
            return
        task.error = reason
        task.move(task_states.LOST, time.time(), reason)
        await self._finish(task)

    def _on_machine(self, machine_id: str) -> Sequence[TaskRecord]:
        return [t for t in self.active.values() if t.machine_id == machine_id and t.status in task_states.ON_MACHINE]

    def machine_unreachable(self, machine_id: str, since: float) -> None:
        """Its tasks keep their status (they may well still run there) and carry a warning until it is back."""
        self._scheduler.remove_machine(machine_id)
        warning = f"machine {machine_id} unreachable since {_utc_time(since)} UTC"
        self._unreachable[machine_id] = warning
        for task in self._on_machine(machine_id):
            task.warning = warning
            self.events.record(task)

    async def machine_lost(self, machine_id: str, since: float) -> None:
        """The machine stayed away past its grace period: its tasks are LOST."""
        self._scheduler.remove_machine(machine_id)
        self._unreachable.pop(machine_id, None)
        reason = (
            f"machine {machine_id} unreachable since {_utc_time(since)} UTC, "
            f"longer than the grace period of {_seconds(self._hub.grace)}"
        )
        await asyncio.gather(*(self._lose(task, reason) for task in self._on_machine(machine_id)))

    def _change_refused(self, task_id: str) -> None:
        """The database refused a change of an active task, so the task in memory is ahead of its row: the task
        ends as FAILED (stopped on its machine first), which stores it again."""
        task = self.active.get(task_id)
        if task is None:
            return
        reason = "the database refused to store a change of this task; the server log has the details"
        stopping = asyncio.ensure_future(self._stop(task, task_states.FAILED, reason, DEFAULT_GRACE))
        self._background.add(stopping)
        stopping.add_done_callback(_forget_failure)
        stopping.add_done_callback(self._background.discard)

    def machine_disconnected(self, machine_id: str) -> None:
        """The machine's capacity is gone until it reconnects; its tasks wait for it (see AgentHub)."""
        self._scheduler.remove_machine(machine_id)

    def active_count(self, owner: str) -> int:
        return self._active_per_owner.get(owner, 0)

    # -- internals -----------------------------------------------------------------------------------------

    def _track(self, task: TaskRecord) -> None:
        self.active[task.id] = task
        self._active_per_owner[task.owner] = self._active_per_owner.get(task.owner, 0) + 1

    def _dispatch(self, machine_group: str) -> None:
        """Sends every queued task that fits to its machine, marking it PREPARING."""
        now = time.time()
        for task, machine in self._scheduler.place(machine_group):
            task.machine_id = machine.machine_id
            task.move(task_states.PREPARING, now, f"assigned to {machine.machine_id}")
            self.events.record(task)
            session = self._hub.session(machine.machine_id)
            if session is not None:
                session.send(Assignment.of(task))

    def _arm_expiry(self, task: TaskRecord) -> None:
        if task.time_to_live <= 0:
            return
        remaining = task.created_at + task.time_to_live - time.time()
        loop = asyncio.get_running_loop()
        self._expiries[task.id] = loop.call_later(max(0.0, remaining), self._expire, task.id)

    def _expire(self, task_id: str) -> None:
        self._expiries.pop(task_id, None)
        task = self.active.get(task_id)
        if task is None:
            return
        reason = f"time to live of {_seconds(task.time_to_live)} ran out"
        stopping = asyncio.ensure_future(self._stop(task, task_states.TIMED_OUT, reason, TTL_GRACE))
        self._background.add(stopping)
        stopping.add_done_callback(self._background.discard)


def _task_of_request(session: Session, owner: str, request_id: str) -> TaskRow | None:
    """The task an earlier submit with this request id made, if any."""
    query = select(TaskRow).where(col(TaskRow.owner) == owner, col(TaskRow.request_id) == request_id)
    row: TaskRow | None = session.execute(query).scalar_one_or_none()
    return row


def _forget_failure(done: asyncio.Future[None]) -> None:
    """A background stop whose end could not be stored was already logged by the event stream."""
    if not done.cancelled():
        done.exception()


def _decode_page_token(token: str) -> str:
    try:
        task_id = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument("page_token", "is not a token from a previous ListTasks response") from None
    request_limits.check_text("page_token", task_id, request_limits.MAX_ID_CHARS)
    return task_id


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _utc_time(unix_time: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(unix_time))
