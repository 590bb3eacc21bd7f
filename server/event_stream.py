"""Task changes: committed in groups, numbered by revision, then published to watchers.

A change is stored (task row + event row holding the task as of that revision) before anyone hears of it, so a
revision a watcher has seen survives a server restart. Changes that arrive while a commit is in flight go into
the next commit together, which keeps the database cost per change low when hundreds arrive at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlmodel import Session, col

from simplane._api.v1 import task_pb2
from simplane._protocol.backoff import Backoff
from simplane.server import errors, task_states
from simplane.server.store.database import Database
from simplane.server.store.models import TaskEventRow, TaskRow, table_of
from simplane.server.task_record import TaskRecord

log = logging.getLogger(__name__)

# A watcher further behind than this is cut off from live delivery and catches up from the database.
WATCHER_QUEUE_LIMIT = 10_000
# How long a commit is retried while the database cannot be reached before its waiters are told Unavailable.
OUTAGE_RETRY_LIMIT = 15.0


@dataclass
class Change:
    revision: int
    task: task_pb2.Task

    @functools.cached_property
    def event(self) -> task_pb2.WatchTasksResponse:
        """This change as a WatchTasks event: built once, then sent as is to every watcher."""
        return task_pb2.WatchTasksResponse(
            type=task_pb2.WatchEventType.WATCH_EVENT_TYPE_CHANGE, revision=self.revision, task=self.task
        )


@dataclass
class Recorded:
    committed: asyncio.Future[None]  # resolves once the change is stored
    task: task_pb2.Task  # the task as of the change


@dataclass
class _Entry:
    """One recorded change on its way to the database."""

    task_id: str
    new: bool  # inserts the task's row
    row: dict[str, Any]
    event: dict[str, Any]
    change: Change
    done: asyncio.Future[None] | None  # None for a change nobody awaits (carried over an outage)


class Subscription:
    """A watcher's live feed: changes for which `accepts(task)` holds, in revision order.

    A watcher of named tasks is only offered their changes, so thousands of `Task.wait()` calls cost little. An
    offer costs a few checks and an append; the watcher wakes once for all the changes queued since it last looked.
    """

    def __init__(self, owner: str, accepts: Callable[[task_pb2.Task], bool], task_ids: frozenset[str]) -> None:
        self.owner = owner
        self.accepts = accepts
        self.task_ids = task_ids
        self.pending: deque[Change] = deque()
        self.overflowed = False
        self._arrived: asyncio.Future[None] | None = None

    def offer(self, change: Change) -> None:
        if self.overflowed or change.task.owner != self.owner or not self.accepts(change.task):
            return
        if len(self.pending) >= WATCHER_QUEUE_LIMIT:
            self.overflowed = True
        else:
            self.pending.append(change)
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Waits until a change is pending or the feed overflowed; False if `timeout` seconds passed first."""
        if self.pending or self.overflowed:
            return True
        self._arrived = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._arrived, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._arrived = None


class EventStream:
    """Numbers, stores and publishes task changes.

    A commit the database refuses is retried task by task, so only the changes of the task it refuses fail:
    their `committed` futures get the error, `on_refused(task_id)` hears of each refused change of a task
    already stored (the task in memory is then ahead of its row), and everyone else's changes are stored. While
    the database cannot be reached a commit is retried with backoff for OUTAGE_RETRY_LIMIT seconds, then its
    waiters get Unavailable; the latest state of each task already stored is carried into the next commit under
    a new revision, so the database catches up with memory once it is back.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending: list[_Entry] = []
        self._flushing: asyncio.Task[None] | None = None
        self._watching_all: set[Subscription] = set()
        self._watching_task: dict[str, set[Subscription]] = {}
        # The last committed state of each active task, for snapshots that need no database read.
        self.latest: dict[str, Change] = {}
        self.head = 0  # the last committed revision
        self._next = 1
        self.on_refused: Callable[[str], None] | None = None

    def load(self) -> None:
        """Continues numbering after the last stored revision (startup, before serving)."""
        last = self._database.call(lambda s: s.execute(select(func.max(TaskEventRow.revision))).scalar())
        self.head = last or 0
        self._next = self.head + 1

    def record(self, task: TaskRecord, *, new: bool = False) -> Recorded:
        """Numbers the task's current state as a new revision, to be committed with the next group."""
        task.revision = self._next
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        message = self._append(task.id, new, task.to_row(), task.to_proto(), done)
        return Recorded(done, message)

    def _append(
        self, task_id: str, new: bool, row: dict[str, Any], message: task_pb2.Task, done: asyncio.Future[None] | None
    ) -> task_pb2.Task:
        revision = self._next
        self._next += 1
        row["revision"] = message.revision = revision
        event = {"revision": revision, "task_id": task_id, "owner": message.owner, "task": message.SerializeToString()}
        self._pending.append(_Entry(task_id, new, row, event, Change(revision, message), done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return message

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                stored = await self._store(batch)
                self.head = max(self.head, batch[-1].change.revision)
                for entry in stored:
                    change = entry.change
                    if change.task.status in task_states.TERMINAL:
                        self.latest.pop(change.task.id, None)
                    else:
                        self.latest[change.task.id] = change
                    for subscription in self._watching_all:
                        subscription.offer(change)
                    for subscription in self._watching_task.get(change.task.id, ()):
                        subscription.offer(change)
                    if entry.done is not None and not entry.done.done():
                        entry.done.set_result(None)
        finally:
            self._flushing = None

    async def _store(self, batch: list[_Entry]) -> list[_Entry]:
        """Commits a batch; returns the entries stored, in revision order. When the database refuses the batch,
        each task's changes are committed on their own, to find the refused ones."""
        try:
            await self._commit(batch)
            return batch
        except errors.Unavailable as error:
            self._outage(batch, error)
            return []
        except Exception as error:
            refusal = error
        groups: dict[str, list[_Entry]] = {}
        for entry in batch:
            groups.setdefault(entry.task_id, []).append(entry)
        if len(groups) == 1:
            self._refuse(batch, refusal)
            return []
        stored: list[_Entry] = []
        remaining = list(groups.values())
        while remaining:
            group = remaining.pop(0)
            try:
                await self._commit(group)
            except errors.Unavailable as error:
                self._outage([entry for entries in [group, *remaining] for entry in entries], error)
                break
            except Exception as error:
                self._refuse(group, error)
            else:
                stored.extend(group)
        stored.sort(key=lambda entry: entry.change.revision)
        return stored

    async def _commit(self, entries: list[_Entry]) -> None:
        """One transaction, retried with backoff while the database cannot be reached, for a bounded time."""
        backoff = Backoff(0.05, 2.0, jitter=False)
        give_up = time.monotonic() + OUTAGE_RETRY_LIMIT
        while True:
            try:
                await self._database.run(_write, entries)
                return
            except errors.Unavailable as error:
                delay = backoff.next_delay()
                if time.monotonic() + delay > give_up:
                    raise
                log.warning("storing %d task changes failed (%s); retrying in %.1f s", len(entries), error, delay)
            await asyncio.sleep(delay)

    def _refuse(self, entries: list[_Entry], error: Exception) -> None:
        """The database refused this task's changes: they fail, once, and nobody else's."""
        task_id = entries[0].task_id
        log.error("the database refused %d change(s) of task %s: %s", len(entries), task_id, error)
        failure = error if isinstance(error, errors.DomainError) else errors.FailedPrecondition(str(error))
        for entry in entries:
            if entry.done is not None and not entry.done.done():
                entry.done.set_exception(failure)
        if not entries[0].new and self.on_refused is not None:
            self.on_refused(task_id)

    def _outage(self, entries: list[_Entry], error: errors.Unavailable) -> None:
        """The database stayed away: the waiters are told; each stored task's latest state is carried over."""
        log.error(
            "the database stayed unreachable for %.0f s; %d task changes failed", OUTAGE_RETRY_LIMIT, len(entries)
        )
        latest: dict[str, _Entry] = {}
        for entry in entries:
            if entry.done is not None and not entry.done.done():
                entry.done.set_exception(error)
            if not entry.new:
                latest[entry.task_id] = entry
        newer = {entry.task_id for entry in self._pending}
        carried = [entry for task_id, entry in latest.items() if task_id not in newer]
        for entry in carried:
            message = task_pb2.Task()
            message.CopyFrom(entry.change.task)
            self._append(entry.task_id, False, dict(entry.row), message, None)

    async def settled(self) -> None:
        """Waits until everything recorded so far is committed."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    def subscribe(self, subscription: Subscription) -> None:
        if not subscription.task_ids:
            self._watching_all.add(subscription)
        for task_id in subscription.task_ids:
            self._watching_task.setdefault(task_id, set()).add(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._watching_all.discard(subscription)
        for task_id in subscription.task_ids:
            watchers = self._watching_task.get(task_id)
            if watchers is not None:
                watchers.discard(subscription)
                if not watchers:
                    del self._watching_task[task_id]

    async def replay(self, owner: str, after: int, upto: int, limit: int = 1000) -> list[Change]:
        """Committed changes of owner's tasks with after < revision <= upto, oldest first."""

        def read(session: Session) -> list[Change]:
            rows = session.execute(
                select(col(TaskEventRow.revision), col(TaskEventRow.task))
                .where(
                    col(TaskEventRow.owner) == owner,
                    col(TaskEventRow.revision) > after,
                    col(TaskEventRow.revision) <= upto,
                )
                .order_by(col(TaskEventRow.revision))
                .limit(limit)
            ).all()
            return [Change(revision, task_pb2.Task.FromString(data)) for revision, data in rows]

        return await self._database.run(read)


_TASKS = table_of(TaskRow)
_UPDATE_TASK = _TASKS.update().where(_TASKS.c.id == bindparam("row_id"))


def _write(session: Session, entries: list[_Entry]) -> None:
    new_rows: dict[str, dict[str, Any]] = {}
    updated_rows: dict[str, dict[str, Any]] = {}
    for entry in entries:  # a task's last row wins; a task inserted in this batch stays an insert
        if entry.new or entry.task_id in new_rows:
            new_rows[entry.task_id] = entry.row
        else:
            updated_rows[entry.task_id] = entry.row
    if new_rows:
        session.execute(_TASKS.insert(), list(new_rows.values()))
    if updated_rows:
        session.execute(_UPDATE_TASK, [{**row, "row_id": row["id"]} for row in updated_rows.values()])
    session.execute(table_of(TaskEventRow).insert(), [entry.event for entry in entries])
