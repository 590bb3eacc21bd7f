"""WatchTasks: a snapshot then every change, or a replay of the changes after a revision, then live."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlmodel import Session, col

from simplane._api.v1 import task_pb2
from simplane.server import errors, task_states
from simplane.server.caller import Caller
from simplane.server.event_stream import EventStream, Subscription
from simplane.server.store.database import Database
from simplane.server.store.models import TaskRow, table_of
from simplane.server.task_record import TaskRecord

W = task_pb2.WatchEventType
DEFAULT_ENDED_LIMIT = 100
_TASKS = table_of(TaskRow)


class TaskWatch:
    def __init__(self, database: Database, events: EventStream, heartbeat: float) -> None:
        self._database = database
        self._events = events
        self._heartbeat = heartbeat

    async def stream(
        self, caller: Caller, request: task_pb2.WatchTasksRequest
    ) -> AsyncIterator[task_pb2.WatchTasksResponse]:
        if request.since_revision < 0:
            raise errors.InvalidArgument("since_revision", "must not be negative")
        if request.since_revision > self._events.head:
            raise errors.OutOfRange(
                f"since_revision {request.since_revision} is ahead of the server's revision {self._events.head}"
            )
        task_ids = frozenset(request.task_ids)

        def accepts(task: task_pb2.Task) -> bool:
            return (
                (not task_ids or task.id in task_ids)
                and (not request.project or task.project == request.project)
                and (not request.machine_group or task.machine_group == request.machine_group)
            )

        subscription = Subscription(caller.user, accepts, task_ids)
        self._events.subscribe(subscription)
        # Subscribed before the snapshot or the replay is read, so the live feed continues where they end; the
        # database is read again only if the watcher falls behind the feed.
        catching_up = request.since_revision > 0
        try:
            named, last = await self._named(caller.user, task_ids) if task_ids else ([], 0)
            if request.since_revision == 0:
                if task_ids:
                    tasks = sorted((t for t in named if _matches(t, request)), key=lambda t: t.id, reverse=True)
                else:
                    tasks, last = await self._snapshot(caller.user, request)
                for task in tasks:
                    yield task_pb2.WatchTasksResponse(type=W.WATCH_EVENT_TYPE_SNAPSHOT, revision=last, task=task)
                yield task_pb2.WatchTasksResponse(type=W.WATCH_EVENT_TYPE_SNAPSHOT_END, revision=last)
            else:
                last = request.since_revision
            while True:
                if catching_up or subscription.overflowed:
                    catching_up = False
                    self._events.unsubscribe(subscription)
                    subscription = Subscription(caller.user, accepts, task_ids)
                    self._events.subscribe(subscription)
                    upto = self._events.head
                    while last < upto:
                        changes = await self._events.replay(caller.user, last, upto)
                        if not changes:
                            break
                        for change in changes:
                            if accepts(change.task):
                                yield change.event
                        last = changes[-1].revision
                    last = max(last, upto)
                if not await subscription.wait(self._heartbeat):
                    if not subscription.pending and not subscription.overflowed:
                        last = max(last, self._events.head)  # everything up to head that matches was sent
                    yield task_pb2.WatchTasksResponse(type=W.WATCH_EVENT_TYPE_HEARTBEAT, revision=last)
                    continue
                while subscription.pending and not subscription.overflowed:
                    change = subscription.pending.popleft()
                    if change.revision > last:
                        yield change.event  # one message per change, shared by every watcher
                        last = change.revision
        finally:
            self._events.unsubscribe(subscription)

    async def _snapshot(self, owner: str, request: task_pb2.WatchTasksRequest) -> tuple[list[task_pb2.Task], int]:
        """The caller's matching tasks, newest first, and the revision they are as of: the active ones from memory,
        the latest ended ones from the database, so the cost follows what is sent, not what is stored."""
        last = self._events.head
        active = [
            change.task
            for change in self._events.latest.values()
            if change.task.owner == owner and _matches(change.task, request)
        ]
        limit = request.snapshot_ended_limit or DEFAULT_ENDED_LIMIT
        ended = await self._database.run(_ended, owner, request, last, limit)
        return sorted([*active, *ended], key=lambda task: task.id, reverse=True), last

    async def _named(self, owner: str, task_ids: frozenset[str]) -> tuple[list[task_pb2.Task], int]:
        """The named tasks and the revision they are as of; one that is not the caller's is NOT_FOUND, as for
        every other call. Active tasks come from memory; ended ones, which no longer change, from the database."""
        last = self._events.head
        latest = self._events.latest
        tasks = [latest[i].task for i in task_ids if i in latest and latest[i].task.owner == owner]
        unknown = task_ids - {task.id for task in tasks}
        if unknown:
            ended = await self._database.run(
                lambda s: [
                    TaskRecord.from_row(row).to_proto()
                    for row in s.execute(
                        select(TaskRow).where(col(TaskRow.owner) == owner, col(TaskRow.id).in_(unknown))
                    ).scalars()
                ]
            )
            missing = sorted(unknown - {task.id for task in ended})
            if missing:
                raise errors.NotFound(f"task {missing[0]!r} not found")
            tasks.extend(ended)
        return tasks, last


def _matches(task: task_pb2.Task, request: task_pb2.WatchTasksRequest) -> bool:
    return (not request.project or task.project == request.project) and (
        not request.machine_group or task.machine_group == request.machine_group
    )


def _ended(
    session: Session, owner: str, request: task_pb2.WatchTasksRequest, last: int, limit: int
) -> list[task_pb2.Task]:
    """The caller's `limit` newest matching tasks that had ended by revision `last` (one that ends later is an
    active task of the snapshot, and its end comes as a change)."""
    query = select(_TASKS).where(
        _TASKS.c.owner == owner, _TASKS.c.status.in_(task_states.TERMINAL), _TASKS.c.revision <= last
    )
    if request.project:
        query = query.where(_TASKS.c.project == request.project)
    if request.machine_group:
        query = query.where(_TASKS.c.machine_group == request.machine_group)
    rows = session.execute(query.order_by(_TASKS.c.id.desc()).limit(limit))
    return [TaskRecord.from_row(row).to_proto() for row in rows]
