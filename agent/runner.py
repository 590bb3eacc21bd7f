"""One task on this agent: its working directory, its process, its output and its status updates."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from simplane._api.v1 import agent_pb2, task_pb2
from simplane._protocol.backoff import Backoff
from simplane.agent.output_spool import MAX_CHUNK, OutputSpool
from simplane.agent.sandbox import Sandbox, TaskDirs, TaskProcess
from simplane.agent.task_files import timestamp_ns
from simplane.agent.transfers import StagedInputs, TransferError, Transfers, UploadedOutputs

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# Output is sent at most once per HOLD_NS per stream unless a chunk's worth is waiting (see _output_ready).
HOLD_NS = 1_000_000
DEFAULT_GRACE_PERIOD = 10.0
# Output sent but not acknowledged, with no acknowledgement at all for this long (doubling while the server keeps
# refusing, as when its disk is full), is sent again from what the server acknowledged.
RESEND_AFTER = 1.0
RESEND_AFTER_MAX = 5.0

Status = task_pb2.TaskStatus
STDOUT = task_pb2.LOG_STREAM_STDOUT
STDERR = task_pb2.LOG_STREAM_STDERR


class _StartError(Exception):
    """The command could not be started."""


class _PendingUpdate(NamedTuple):
    update: agent_pb2.TaskUpdate
    # The stream sizes when the update happened: that output goes out before the update does.
    stdout_mark: int
    stderr_mark: int


class TaskRun:
    """Runs one assigned task and keeps what it reports until the server has acknowledged it.

    Updates are numbered from 1. Output and updates leave in the order they happened: `outgoing` sends the
    output written before an update ahead of that update.
    """

    def __init__(
        self,
        assignment: agent_pb2.TaskAssignment,
        task_dir: Path,
        transfers: Transfers,
        sandbox: Sandbox,
        on_change: Callable[[TaskRun], None],
    ) -> None:
        self.task_id = assignment.task_id
        self.attempt = assignment.attempt
        self.task_dir = task_dir
        self._dirs = TaskDirs.under(task_dir)
        self.work_dir = self._dirs.work
        self.process_ended = asyncio.Event()
        # True once the terminal update is recorded.
        self.finished = False
        self._assignment = assignment
        self._transfers = transfers
        self._sandbox = sandbox
        self._on_change = on_change
        self._spools: dict[int, OutputSpool] = {
            STDOUT: OutputSpool(task_dir / "stdout"),
            STDERR: OutputSpool(task_dir / "stderr"),
        }
        self._updates: list[_PendingUpdate] = []
        self._seq = 0
        self._sent_seq = 0
        self._kill: agent_pb2.TaskKill | None = None
        self._process: TaskProcess | None = None
        self._preparing: asyncio.Task[asyncio.subprocess.Process] | None = None
        self._force_kill: asyncio.TimerHandle | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._resend_timer: asyncio.TimerHandle | None = None
        self._resend_backoff = Backoff(RESEND_AFTER, RESEND_AFTER_MAX)
        self._inputs = StagedInputs()
        self._outputs = UploadedOutputs()
        self._task = asyncio.create_task(self._run(), name=f"task {self.task_id}")

    # What the connection asks of a task.

    @property
    def ready_to_send(self) -> bool:
        """Whether `outgoing` has something now; output held back for coalescing schedules a later call
        of `on_change` instead."""
        if self._updates and self._updates[-1].update.seq > self._sent_seq:
            return True
        now = time.monotonic_ns()
        return any(self._output_ready(spool, now) for spool in self._spools.values())

    @property
    def settled(self) -> bool:
        """Finished, with every update and every byte of output stored by the server."""
        return self.finished and not self._updates and all(s.settled for s in self._spools.values())

    def outgoing(self, max_bytes: int) -> list[agent_pb2.ConnectRequest]:
        """The next unsent messages, about `max_bytes` of output at most; they count as sent."""
        messages: list[agent_pb2.ConnectRequest] = []
        budget = max_bytes
        for pending in self._updates:
            if pending.update.seq <= self._sent_seq:
                continue
            budget = self._take_output(messages, (pending.stdout_mark, pending.stderr_mark), budget)
            stdout, stderr = self._spools[STDOUT], self._spools[STDERR]
            if stdout.sent < pending.stdout_mark or stderr.sent < pending.stderr_mark:
                return messages
            messages.append(agent_pb2.ConnectRequest(task_update=pending.update))
            self._sent_seq = pending.update.seq
        now = time.monotonic_ns()
        stdout_limit, stderr_limit = (
            spool.size if self._output_ready(spool, now) else spool.sent
            for spool in (self._spools[STDOUT], self._spools[STDERR])
        )
        self._take_output(messages, (stdout_limit, stderr_limit), budget)
        return messages

    def resume(self, resume: agent_pb2.TaskResume) -> None:
        """Starts resending from where the server says it got to."""
        self._spools[STDOUT].rewind(resume.stdout_offset)
        self._spools[STDERR].rewind(resume.stderr_offset)
        self.ack_update(resume.update_seq)
        self._sent_seq = resume.update_seq

    def ack_output(self, stream: task_pb2.LogStream.ValueType, offset: int) -> None:
        spool = self._spools.get(stream)
        if spool is not None:
            spool.ack(offset)
            self._watch_acks()

    def _watch_acks(self) -> None:
        """While output is unacknowledged, checks after a pause whether the server acknowledged any of it."""
        if self._resend_timer is None and any(s.acked < s.sent for s in self._spools.values()):
            acked = tuple(s.acked for s in self._spools.values())
            delay = self._resend_backoff.next_delay()
            self._resend_timer = asyncio.get_running_loop().call_later(delay, self._resend_unacked, acked)

    def _resend_unacked(self, acked_before: tuple[int, ...]) -> None:
        """Sends again what the server did not store (it refused it: its disk was full), from what it stored,
        together with the updates that came after that output."""
        self._resend_timer = None
        stdout, stderr = self._spools[STDOUT], self._spools[STDERR]
        if (stdout.acked, stderr.acked) != acked_before:  # acknowledgements came: the server stores; look again
            self._resend_backoff.reset()
            self._watch_acks()
            return
        for spool in (stdout, stderr):
            spool.rewind(spool.acked)
        # The server refuses an update until the output written before it is stored.
        refused = [p for p in self._updates if p.stdout_mark > stdout.acked or p.stderr_mark > stderr.acked]
        if refused:
            self._sent_seq = min(self._sent_seq, refused[0].update.seq - 1)
        self._on_change(self)

    def ack_update(self, seq: int) -> None:
        self._updates = [p for p in self._updates if p.update.seq > seq]

    def kill(self, kill: agent_pb2.TaskKill) -> None:
        """SIGTERM to the process group, SIGKILL after the grace period; before the start, cancels it."""
        if self._kill is not None or self.process_ended.is_set():
            return
        self._kill = kill
        if self._process is None:
            if self._preparing is not None:
                self._preparing.cancel()
            return
        grace = (
            kill.grace_period.seconds + kill.grace_period.nanos / 1e9
            if kill.HasField("grace_period")
            else DEFAULT_GRACE_PERIOD
        )
        self._signal_group(signal.SIGTERM)
        self._force_kill = asyncio.get_running_loop().call_later(grace, self._signal_group, signal.SIGKILL)

    async def stop(self) -> None:
        """Ends the run without reporting: SIGKILL to its process group. Used when the task is dropped."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self._process is not None and self._process.process.returncode is None:
            await self._process.process.wait()

    def close(self) -> None:
        for timer in (self._flush_timer, self._resend_timer):
            if timer is not None:
                timer.cancel()
        for spool in self._spools.values():
            spool.close()

    # The run itself.

    async def _run(self) -> None:
        try:
            if self._kill is not None:
                self._finish(self._kill.status, error=self._kill.reason)
                return
            self._preparing = asyncio.create_task(self._prepare())
            try:
                process = await self._preparing
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._kill is None or (current is not None and current.cancelling()):
                    raise
                self._finish(self._kill.status, error=self._kill.reason)
                return
            except (TransferError, _StartError) as err:
                self._finish(Status.TASK_STATUS_FAILED, error=str(err))
                return
            self._record(Status.TASK_STATUS_RUNNING)
            await self._supervise(process)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the agent's own failure (a full disk, say): the task fails with it
            if not self.finished:
                self._finish(Status.TASK_STATUS_FAILED, error=f"agent error: {err}")
        finally:
            if self._force_kill is not None:
                self._force_kill.cancel()
            if self._process is not None:
                if self._process.process.returncode is None:
                    self._signal_group(signal.SIGKILL)
                self._process.close()
            self.process_ended.set()

    async def _prepare(self) -> asyncio.subprocess.Process:
        if self.task_dir.exists():
            shutil.rmtree(self.task_dir)
        if self._assignment.has_inputs:
            self._inputs = await self._transfers.download_inputs(self.task_id, self.work_dir)
        else:
            self.work_dir.mkdir(parents=True)
        command = list(self._assignment.command)
        if not command:
            raise _StartError("empty command")
        env = self._sandbox.environment(self.task_id, self.attempt, self._dirs, dict(self._assignment.env))
        try:
            self._process = await self._sandbox.start(command, env, self._dirs)
        except FileNotFoundError as err:
            raise _StartError(f"command not found: {command[0]}") from err
        except PermissionError as err:
            raise _StartError(f"permission denied: {command[0]}") from err
        except OSError as err:
            raise _StartError(f"cannot start {command[0]}: {err.strerror or err}") from err
        return self._process.process

    async def _supervise(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None and process.stderr is not None
        await asyncio.gather(
            self._pump(process.stdout, self._spools[STDOUT]),
            self._pump(process.stderr, self._spools[STDERR]),
            self._reap(process),
        )
        if self._force_kill is not None:
            self._force_kill.cancel()
        self.process_ended.set()
        code = process.returncode
        assert code is not None
        exit_code = code if code >= 0 else 128 - code
        self._record(Status.TASK_STATUS_FINALIZING, exit_code=exit_code)
        upload_error = ""
        try:
            self._outputs = await self._transfers.upload_outputs(self.task_id, self.work_dir, self._inputs)
        except TransferError as err:
            upload_error = str(err)
        if self._kill is not None:
            self._finish(self._kill.status, exit_code=exit_code, error=self._kill.reason)
        elif code != 0:
            error = f"exited with code {code}" if code > 0 else f"killed by signal {-code}"
            self._finish(Status.TASK_STATUS_FAILED, exit_code=exit_code, error=error)
        elif upload_error:
            self._finish(Status.TASK_STATUS_FAILED, exit_code=exit_code, error=upload_error)
        else:
            self._finish(Status.TASK_STATUS_SUCCEEDED, exit_code=exit_code)

    async def _pump(self, reader: asyncio.StreamReader, spool: OutputSpool) -> None:
        """Spools the pipe as data arrives; never waits for the network."""
        while data := await reader.read(READ_SIZE):
            await self._spool(spool, data, time.time_ns())
            self._on_change(self)

    async def _spool(self, spool: OutputSpool, data: bytes, time_ns: int) -> None:
        """On a full disk the chunk waits here, retried with backoff, and the pipe is not read meanwhile: the
        task blocks on its writes until space returns, and no byte is lost."""
        backoff = Backoff(RESEND_AFTER, RESEND_AFTER_MAX)
        waited = False
        while True:
            try:
                spool.append(data, time_ns)
                return
            except OSError as error:
                if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                if not waited:
                    log.warning("task %s: no space left in the work dir; its output waits for room", self.task_id)
                    waited = True
            await asyncio.sleep(backoff.next_delay())

    async def _reap(self, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        # What the task left running in its group would keep the pipes open.
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._process is not None:
            self._process.signal(sig)

    # Updates.

    def _record(self, status: task_pb2.TaskStatus.ValueType, *, exit_code: int | None = None, error: str = "") -> None:
        self._seq += 1
        stdout_size = self._spools[STDOUT].size
        stderr_size = self._spools[STDERR].size
        update = agent_pb2.TaskUpdate(
            task_id=self.task_id,
            attempt=self.attempt,
            seq=self._seq,
            status=task_pb2.TaskStatus.ValueType(status),
            time=timestamp_ns(time.time_ns()),
            exit_code=exit_code,
            error=error,
            stdout_size=stdout_size,
            stderr_size=stderr_size,
            input_bytes=self._inputs.bytes,
            input_files=len(self._inputs.files),
            output_bytes=self._outputs.bytes,
            output_files=self._outputs.files,
        )
        self._updates.append(_PendingUpdate(update, stdout_size, stderr_size))
        self._on_change(self)

    def _finish(self, status: task_pb2.TaskStatus.ValueType, *, exit_code: int | None = None, error: str = "") -> None:
        self.finished = True
        self.process_ended.set()
        self._record(status, exit_code=exit_code, error=error)

    def _output_ready(self, spool: OutputSpool, now: int) -> bool:
        """Unsent output goes at once after a quiet spell, else once a chunk's worth is waiting or HOLD_NS
        after the last send: a line printed on its own leaves within the millisecond, a fast writer's
        output leaves in few large messages."""
        if not spool.unsent:
            return False
        wait = spool.last_take_ns + HOLD_NS - now
        if wait <= 0 or spool.size - spool.sent >= MAX_CHUNK:
            return True
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(wait / 1e9, self._flush_held)
        return False

    def _flush_held(self) -> None:
        self._flush_timer = None
        self._on_change(self)

    def _take_output(self, messages: list[agent_pb2.ConnectRequest], limits: tuple[int, ...], budget: int) -> int:
        for stream, limit in zip((STDOUT, STDERR), limits, strict=True):
            spool = self._spools[stream]
            while budget > 0 and spool.sent < limit:
                for chunk in spool.take(limit, budget):
                    messages.append(
                        agent_pb2.ConnectRequest(
                            task_output=agent_pb2.TaskOutput(
                                task_id=self.task_id,
                                attempt=self.attempt,
                                chunk=task_pb2.LogChunk(
                                    stream=stream,
                                    offset=chunk.offset,
                                    data=chunk.data,
                                    time=timestamp_ns(chunk.time_ns),
                                ),
                            )
                        )
                    )
                    budget -= len(chunk.data)
        return budget
