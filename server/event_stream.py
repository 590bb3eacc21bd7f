"""Task changes: committed in groups, numbered by revision, then published to watchers.

A change is stored (task row + event row holding the task as of that revision) before anyone hears of it, so a
revision a watcher has seen survives a server restart. Changes that arrive while a commit is in flight go into
the next commit together, which keeps the database cost per change low when hundreds arrive at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select

from simplane._api.v1 import task_pb2
from simplane.server import task_states
from simplane.server.store.database import Database
from simplane.server.store.models import TaskEventRow, TaskRow
from simplane.server.task_record import TaskRecord

log = logging.getLogger(__name__)

# A watcher further behind than this is cut off from live delivery and catches up from the database.
WATCHER_QUEUE_LIMIT = 10_000


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
class _Pending:
    new_rows: dict[str, dict] = field(default_factory=dict)
    updated_rows: dict[str, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    done: list[asyncio.Future[None]] = field(default_factory=list)


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
    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending = _Pending()
        self._flushing: asyncio.Task[None] | None = None
        self._watching_all: set[Subscription] = set()
        self._watching_task: dict[str, set[Subscription]] = {}
        # The last committed state of each active task, for snapshots that need no database read.
        self.latest: dict[str, Change] = {}
        self.head = 0  # the last committed revision
        self._next = 1

    def load(self) -> None:
        """Continues numbering after the last stored revision (startup, before serving)."""
        last = self._database.call(lambda s: s.execute(select(func.max(TaskEventRow.revision))).scalar())
        self.head = last or 0
        self._next = self.head + 1

    def record(self, task: TaskRecord, *, new: bool = False) -> Recorded:
        """Numbers the task's current state as a new revision, to be committed with the next group."""
        task.revision = self._next
        self._next += 1
        message = task.to_proto()
        pending = self._pending
        row = task.to_row()
        if new or task.id in pending.new_rows:
            pending.new_rows[task.id] = row
        else:
            pending.updated_rows[task.id] = row
        pending.events.append(
            {"revision": task.revision, "task_id": task.id, "owner": task.owner, "task": message.SerializeToString()}
        )
        pending.changes.append(Change(task.revision, message))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.done.append(done)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return Recorded(done, message)

    async def _flush(self) -> None:
        try:
            while self._pending.events:
                batch, self._pending = self._pending, _Pending()
                await self._store(batch)
                self.head = batch.changes[-1].revision
                for change in batch.changes:
                    if change.task.status in task_states.TERMINAL:
                        self.latest.pop(change.task.id, None)
                    else:
                        self.latest[change.task.id] = change
                    for subscription in self._watching_all:
                        subscription.offer(change)
                    for subscription in self._watching_task.get(change.task.id, ()):
                        subscription.offer(change)
                for done in batch.done:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flushing = None

    async def _store(self, batch: _Pending) -> None:
        """Commits a batch, retrying while the database is away: the changes are already live in memory, so
        giving up would leave the two apart. Nobody is told of them until they are stored."""
        delay = 0.05
        while True:
            try:
                await self._database.run(_write, batch)
                return
            except Exception:
                log.exception("storing %d task changes failed; retrying in %.1f s", len(batch.events), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

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

        def read(session) -> list[Change]:  # type: ignore[no-untyped-def]
            rows = session.execute(
                select(TaskEventRow.revision, TaskEventRow.task)
                .where(TaskEventRow.owner == owner, TaskEventRow.revision > after, TaskEventRow.revision <= upto)
                .order_by(TaskEventRow.revision)
                .limit(limit)
            ).all()
            return [Change(revision, task_pb2.Task.FromString(data)) for revision, data in rows]

        return await self._database.run(read)


_TASKS = TaskRow.__table__
_UPDATE_TASK = _TASKS.update().where(_TASKS.c.id == bindparam("row_id"))


def _write(session, batch: _Pending) -> None:  # type: ignore[no-untyped-def]
    if batch.new_rows:
        session.execute(_TASKS.insert(), list(batch.new_rows.values()))
    if batch.updated_rows:
        session.execute(_UPDATE_TASK, [{**row, "row_id": row["id"]} for row in batch.updated_rows.values()])
    session.execute(TaskEventRow.__table__.insert(), batch.events)
