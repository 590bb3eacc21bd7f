"""The tasks this agent holds: running, or with updates or output the server has not acknowledged yet."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from simplane._api.v1 import agent_pb2
from simplane.agent.runner import TaskRun
from simplane.agent.sandbox import Sandbox
from simplane.agent.transfers import Transfers


class HeldTasks:
    """Starts assigned tasks, routes kills and acknowledgements to them, and hands their unsent messages
    to the connection, one task at a time in turn so that a chatty task cannot hold back the others."""

    def __init__(self, work_dir: Path, transfers: Transfers, sandbox: Sandbox, on_unsent: Callable[[], None]) -> None:
        self._tasks_dir = work_dir / "tasks"
        self._transfers = transfers
        self._sandbox = sandbox
        self._on_unsent = on_unsent
        self._runs: dict[str, TaskRun] = {}
        # Task ids with unsent messages, in the order they are served (a dict as an ordered set).
        self._unsent: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, task_id: str) -> TaskRun | None:
        return self._runs.get(task_id)

    def held(self) -> list[agent_pb2.HeldTask]:
        return [agent_pb2.HeldTask(task_id=run.task_id, attempt=run.attempt) for run in self._runs.values()]

    async def assign(self, assignment: agent_pb2.TaskAssignment) -> None:
        """Starts the task; a repeated assignment is ignored, a new attempt replaces the old one."""
        current = self._runs.get(assignment.task_id)
        if current is not None:
            if current.attempt == assignment.attempt:
                return
            await self._drop(current)
        task_dir = self._tasks_dir / f"{assignment.task_id}-{assignment.attempt}"
        self._runs[assignment.task_id] = TaskRun(assignment, task_dir, self._transfers, self._sandbox, self._changed)

    def kill(self, kill: agent_pb2.TaskKill) -> None:
        run = self._runs.get(kill.task_id)
        if run is not None:
            run.kill(kill)

    def ack_output(self, ack: agent_pb2.OutputAck) -> None:
        run = self._runs.get(ack.task_id)
        if run is not None:
            run.ack_output(ack.stream, ack.offset)
            self._forget_if_settled(run)

    def ack_update(self, ack: agent_pb2.TaskUpdateAck) -> None:
        run = self._runs.get(ack.task_id)
        if run is not None:
            run.ack_update(ack.seq)
            self._forget_if_settled(run)

    async def resume(self, resumes: Iterable[agent_pb2.TaskResume]) -> None:
        """Applies a welcome: resend from the server's offsets, drop what it no longer expects."""
        by_task = {resume.task_id: resume for resume in resumes}
        for run in list(self._runs.values()):
            resume = by_task.get(run.task_id)
            if resume is None:
                await self._drop(run)
                continue
            run.resume(resume)
            if not self._forget_if_settled(run):
                self._changed(run)

    def next_batch(self, max_bytes: int) -> list[agent_pb2.ConnectRequest] | None:
        """Unsent messages of the next task in turn, or None when no task has any."""
        while self._unsent:
            task_id = next(iter(self._unsent))
            del self._unsent[task_id]
            run = self._runs.get(task_id)
            if run is None:
                continue
            batch = run.outgoing(max_bytes)
            if run.ready_to_send:
                self._unsent[task_id] = None
            if batch:
                return batch
        return None

    async def shutdown(self) -> None:
        """Kills every task's process group and removes their directories."""
        for run in list(self._runs.values()):
            await self._drop(run)

    def _changed(self, run: TaskRun) -> None:
        if run.ready_to_send and self._runs.get(run.task_id) is run:
            self._unsent[run.task_id] = None
            self._on_unsent()

    def _forget_if_settled(self, run: TaskRun) -> bool:
        if not run.settled:
            return False
        self._forget(run)
        return True

    async def _drop(self, run: TaskRun) -> None:
        await run.stop()
        self._forget(run)

    def _forget(self, run: TaskRun) -> None:
        if self._runs.get(run.task_id) is not run:
            return
        del self._runs[run.task_id]
        self._unsent.pop(run.task_id, None)
        run.close()
        # Removing a large directory must not stall the event loop; nothing waits for it.
        asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, run.task_dir, True)
