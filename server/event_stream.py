"""Task changes: committed in groups, numbered by revision, then published to watchers.

A change is stored (task row + event row holding the task as of that revision) before anyone hears of it, so a
revision a watcher has seen survives a server restart. Changes that arrive while a commit is in flight go into
the next commit together, which keeps the database cost per change low when hundreds arrive at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, insert, select, update

from simplane._api.v1 import task_pb2
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


@dataclass
class _Pending:
    new_rows: dict[str, dict] = field(default_factory=dict)
    updated_rows: dict[str, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    done: list[asyncio.Future[None]] = field(default_factory=list)


class Subscription:
    """A watcher's live feed: changes for which `accepts(task)` holds, in revision order."""

    def __init__(self, owner: str, accepts: Callable[[task_pb2.Task], bool]) -> None:
        self.owner = owner
        self.accepts = accepts
        self.queue: asyncio.Queue[Change] = asyncio.Queue()
        self.overflowed = False

    def offer(self, change: Change) -> None:
        if self.overflowed or change.task.owner != self.owner or not self.accepts(change.task):
            return
        if self.queue.qsize() >= WATCHER_QUEUE_LIMIT:
            self.overflowed = True
            return
        self.queue.put_nowait(change)


class EventStream:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending = _Pending()
        self._flushing: asyncio.Task[None] | None = None
        self._subscriptions: set[Subscription] = set()
        self.head = 0  # the last committed revision
        self._next = 1

    def load(self) -> None:
        """Continues numbering after the last stored revision (startup, before serving)."""
        last = self._database.call(lambda s: s.execute(select(func.max(TaskEventRow.revision))).scalar())
        self.head = last or 0
        self._next = self.head + 1

    def record(self, task: TaskRecord, *, new: bool = False) -> asyncio.Future[None]:
        """Numbers the task's current state as a new revision; the future resolves once it is committed."""
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
        return done

    async def _flush(self) -> None:
        try:
            while self._pending.events:
                batch, self._pending = self._pending, _Pending()
                try:
                    await self._database.run(_write, batch)
                except Exception as error:  # the database is gone: every waiter hears of it
                    log.exception("storing %d task changes failed", len(batch.events))
                    for done in batch.done:
                        if not done.done():
                            done.set_exception(error)
                    continue
                self.head = batch.changes[-1].revision
                for change in batch.changes:
                    for subscription in self._subscriptions:
                        subscription.offer(change)
                for done in batch.done:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flushing = None

    async def settled(self) -> None:
        """Waits until everything recorded so far is committed."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)

    def subscribe(self, subscription: Subscription) -> None:
        self._subscriptions.add(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

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


def _write(session, batch: _Pending) -> None:  # type: ignore[no-untyped-def]
    if batch.new_rows:
        session.execute(insert(TaskRow), list(batch.new_rows.values()))
    if batch.updated_rows:
        session.execute(update(TaskRow), list(batch.updated_rows.values()))
    session.execute(insert(TaskEventRow), batch.events)
