"""event_stream: changes numbered by revision, stored before anyone hears of them, offered to the watchers that
want them, and a database refusal failing only the refused task's changes. On a SQLite file in a temporary
directory (the Database refuses in-memory SQLite), in one asyncio loop, with no server process."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from own_loop import run
from sqlalchemy import select
from sqlmodel import col

from simplane._api.v1 import task_pb2
from simplane.server import errors, event_stream, task_states
from simplane.server.event_stream import Change, EventStream, Subscription
from simplane.server.store.database import Database, sqlite_url
from simplane.server.store.models import TaskEventRow, TaskRow
from simplane.server.task_record import TaskRecord

_ids = itertools.count(1)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(str(tmp_path / "simplane.db")))
    database.migrate()
    try:
        yield database
    finally:
        database.close()


def new_task(owner: str = "alice", request_id: str | None = None) -> TaskRecord:
    record = TaskRecord(
        id=f"t-{next(_ids):06d}",
        owner=owner,
        machine_group="local",
        command=["true"],
        created_at=1000.0,
        updated_at=1000.0,
        request_id=request_id,
    )
    record.history.append([task_states.SUBMITTED, 1000.0, ""])
    return record


def stored_events(database: Database) -> list[tuple[int, str, int]]:
    """(revision, task id, status) of every stored event, oldest first."""
    rows = database.call(
        lambda session: session.execute(
            select(col(TaskEventRow.revision), col(TaskEventRow.task)).order_by(col(TaskEventRow.revision))
        ).all()
    )
    return [(revision, (task := task_pb2.Task.FromString(data)).id, task.status) for revision, data in rows]


def stored_tasks(database: Database) -> dict[str, tuple[int, int]]:
    """(status, revision) of every stored task row."""
    rows = database.call(
        lambda session: session.execute(select(col(TaskRow.id), col(TaskRow.status), col(TaskRow.revision))).all()
    )
    return {task_id: (status, revision) for task_id, status, revision in rows}


def revisions(subscription: Subscription) -> list[int]:
    return [change.revision for change in subscription.pending]


def test_changes_are_numbered_in_order_and_stored_before_they_are_committed(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        events.load()
        first, second = new_task(), new_task()
        recorded = [events.record(first, new=True), events.record(second, new=True)]
        first.move(task_states.QUEUED, 1001.0)
        recorded.append(events.record(first))
        assert [r.task.revision for r in recorded] == [1, 2, 3]
        assert (first.revision, second.revision) == (3, 2)
        assert recorded[2].task.status == task_states.QUEUED
        await asyncio.gather(*(r.committed for r in recorded))
        assert events.head == 3
        assert stored_events(database) == [
            (1, first.id, task_states.SUBMITTED),
            (2, second.id, task_states.SUBMITTED),
            (3, first.id, task_states.QUEUED),
        ]
        assert stored_tasks(database) == {first.id: (task_states.QUEUED, 3), second.id: (task_states.SUBMITTED, 2)}

    run(scenario())


def test_numbering_continues_after_the_last_stored_revision(database: Database, tmp_path: Path) -> None:
    async def before() -> None:
        events = EventStream(database)
        events.load()
        for _ in range(4):
            events.record(new_task(), new=True)
        await events.settled()

    run(before())
    database.close()
    reopened = Database(sqlite_url(str(tmp_path / "simplane.db")))
    try:

        async def after() -> int:
            events = EventStream(reopened)
            events.load()
            assert events.head == 4
            recorded = events.record(new_task(), new=True)
            await recorded.committed
            return recorded.task.revision

        assert run(after()) == 5
    finally:
        reopened.close()


def test_a_fresh_database_starts_at_revision_one(database: Database) -> None:
    async def scenario() -> int:
        events = EventStream(database)
        events.load()
        assert events.head == 0
        return events.record(new_task(), new=True).task.revision

    assert run(scenario()) == 1


def test_a_task_new_and_changed_in_one_group_is_inserted_once_with_its_last_state(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        task = new_task()
        events.record(task, new=True)
        for status in (task_states.QUEUED, task_states.PREPARING, task_states.RUNNING):
            task.move(status, 1001.0)
            events.record(task)
        await events.settled()
        assert stored_tasks(database) == {task.id: (task_states.RUNNING, 4)}
        assert [status for _, _, status in stored_events(database)] == [
            task_states.SUBMITTED,
            task_states.QUEUED,
            task_states.PREPARING,
            task_states.RUNNING,
        ]

    run(scenario())


def test_hundreds_of_changes_at_once_are_all_stored_in_revision_order(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        tasks = [new_task() for _ in range(300)]
        first = [events.record(task, new=True) for task in tasks[:100]]
        await asyncio.sleep(0)  # one turn of the loop (no time passes): the first group goes to the database
        later = [events.record(task, new=True) for task in tasks[100:]]  # while it is stored: the next group
        await asyncio.gather(*(r.committed for r in first + later))
        assert [revision for revision, _, _ in stored_events(database)] == list(range(1, 301))
        assert set(stored_tasks(database)) == {task.id for task in tasks}

    run(scenario())


def test_latest_holds_each_active_task_and_forgets_ended_ones(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        running, ending = new_task(), new_task()
        events.record(running, new=True)
        events.record(ending, new=True)
        running.move(task_states.RUNNING, 1001.0)
        events.record(running)
        ending.move(task_states.KILLED, 1001.0, "killed")
        events.record(ending)
        await events.settled()
        assert {task_id: change.revision for task_id, change in events.latest.items()} == {running.id: 3}
        assert events.latest[running.id].task.status == task_states.RUNNING

    run(scenario())


def test_replay_reads_an_owners_stored_changes_within_revisions(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        alice, bob = new_task("alice"), new_task("bob")
        events.record(alice, new=True)  # 1
        events.record(bob, new=True)  # 2
        for status in (task_states.QUEUED, task_states.RUNNING, task_states.SUCCEEDED):
            alice.move(status, 1001.0)
            events.record(alice)  # 3, 4, 5
        await events.settled()
        replayed = await events.replay("alice", after=0, upto=5)
        assert [(c.revision, c.task.id, c.task.status) for c in replayed] == [
            (1, alice.id, task_states.SUBMITTED),
            (3, alice.id, task_states.QUEUED),
            (4, alice.id, task_states.RUNNING),
            (5, alice.id, task_states.SUCCEEDED),
        ]
        assert [c.revision for c in await events.replay("alice", after=1, upto=4)] == [3, 4]
        assert [c.revision for c in await events.replay("alice", after=0, upto=5, limit=2)] == [1, 3]
        assert [c.revision for c in await events.replay("bob", after=0, upto=5)] == [2]
        assert await events.replay("carol", after=0, upto=5) == []

    run(scenario())


def test_a_watcher_of_all_tasks_hears_its_owners_stored_changes_in_order(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        watcher = Subscription("alice", lambda task: True, frozenset())
        events.subscribe(watcher)
        first, other, second = new_task("alice"), new_task("bob"), new_task("alice")
        recorded = [events.record(first, new=True), events.record(other, new=True), events.record(second, new=True)]
        assert revisions(watcher) == []  # nothing is heard before it is stored
        await asyncio.gather(*(r.committed for r in recorded))
        assert revisions(watcher) == [1, 3]
        assert [change.task.id for change in watcher.pending] == [first.id, second.id]

    run(scenario())


def test_a_watcher_hears_only_the_changes_it_accepts(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        watcher = Subscription("alice", lambda task: task.status in task_states.TERMINAL, frozenset())
        events.subscribe(watcher)
        task = new_task()
        events.record(task, new=True)
        task.move(task_states.FAILED, 1001.0, "exit 1")
        events.record(task)
        await events.settled()
        assert revisions(watcher) == [2]

    run(scenario())


def test_a_watcher_of_named_tasks_hears_only_them(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        watched, unwatched = new_task(), new_task()
        watcher = Subscription("alice", lambda task: True, frozenset({watched.id}))
        events.subscribe(watcher)
        events.record(unwatched, new=True)
        events.record(watched, new=True)
        await events.settled()
        assert [change.task.id for change in watcher.pending] == [watched.id]

    run(scenario())


def test_an_unsubscribed_watcher_hears_nothing_more(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        task = new_task()
        everything = Subscription("alice", lambda task: True, frozenset())
        named = Subscription("alice", lambda task: True, frozenset({task.id}))
        events.subscribe(everything)
        events.subscribe(named)
        await events.record(task, new=True).committed
        events.unsubscribe(everything)
        events.unsubscribe(named)
        events.unsubscribe(named)  # twice: nothing more happens
        task.move(task_states.QUEUED, 1001.0)
        await events.record(task).committed
        assert (revisions(everything), revisions(named)) == ([1], [1])

    run(scenario())


def test_a_waiting_watcher_wakes_on_a_change() -> None:
    async def scenario() -> None:
        watcher = Subscription("alice", lambda task: True, frozenset())
        waiting = asyncio.ensure_future(watcher.wait(timeout=30))
        await asyncio.sleep(0)  # one turn of the loop (no time passes): the watcher starts waiting
        assert not waiting.done()
        watcher.offer(Change(7, task_pb2.Task(id="t-1", owner="alice")))
        assert await waiting is True
        assert revisions(watcher) == [7]
        assert await watcher.wait(timeout=30) is True  # a change is pending: no wait

    run(scenario())


def test_a_watcher_waits_no_longer_than_its_timeout() -> None:
    async def scenario() -> bool:
        watcher = Subscription("alice", lambda task: True, frozenset())
        watcher.offer(Change(1, task_pb2.Task(id="t-1", owner="bob")))  # not alice's: not offered
        return await watcher.wait(timeout=0.01)

    assert run(scenario()) is False


def test_a_watcher_too_far_behind_is_cut_off_and_hears_nothing_more() -> None:
    async def scenario() -> None:
        watcher = Subscription("alice", lambda task: True, frozenset())
        task = task_pb2.Task(id="t-1", owner="alice")
        for revision in range(1, event_stream.WATCHER_QUEUE_LIMIT + 1):
            watcher.offer(Change(revision, task))
        assert not watcher.overflowed
        watcher.offer(Change(event_stream.WATCHER_QUEUE_LIMIT + 1, task))
        assert watcher.overflowed
        watcher.pending.clear()
        watcher.offer(Change(event_stream.WATCHER_QUEUE_LIMIT + 2, task))
        assert revisions(watcher) == []
        assert await watcher.wait(timeout=30) is True  # overflowed: the watcher must catch up from the database

    run(scenario())


def test_a_refused_new_task_fails_alone(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        refused_ids: list[str] = []
        events.on_refused = refused_ids.append
        existing = new_task()
        await events.record(existing, new=True).committed
        watcher = Subscription("alice", lambda task: True, frozenset())
        events.subscribe(watcher)
        duplicate = new_task()
        duplicate.id = existing.id  # the database refuses a second row with the same id
        neighbour = new_task()
        refused = events.record(duplicate, new=True)
        accepted = events.record(neighbour, new=True)
        with pytest.raises(errors.FailedPrecondition, match="refused"):
            await refused.committed
        await accepted.committed
        assert refused_ids == []  # a new task has no stored row to fall behind
        assert revisions(watcher) == [3]
        assert [(revision, task_id) for revision, task_id, _ in stored_events(database)] == [
            (1, existing.id),
            (3, neighbour.id),
        ]

    run(scenario())


def test_a_refused_change_of_a_stored_task_fails_alone_and_is_reported(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        refused_ids: list[str] = []
        events.on_refused = refused_ids.append
        holder, other, bystander = new_task(request_id="r-1"), new_task(), new_task()
        for task in (holder, other, bystander):
            events.record(task, new=True)
        await events.settled()
        watcher = Subscription("alice", lambda task: True, frozenset())
        events.subscribe(watcher)
        other.request_id = "r-1"  # unique per owner: the database refuses the update
        other.move(task_states.QUEUED, 1001.0)
        refused = events.record(other)
        bystander.move(task_states.QUEUED, 1001.0)
        accepted = events.record(bystander)
        with pytest.raises(errors.FailedPrecondition):
            await refused.committed
        await accepted.committed
        assert refused_ids == [other.id]
        assert revisions(watcher) == [5]
        assert stored_tasks(database)[other.id] == (task_states.SUBMITTED, 2)
        assert stored_tasks(database)[bystander.id] == (task_states.QUEUED, 5)

    run(scenario())


def test_a_refused_group_of_one_task_fails_all_its_changes(database: Database) -> None:
    async def scenario() -> None:
        events = EventStream(database)
        existing = new_task()
        await events.record(existing, new=True).committed
        duplicate = new_task()
        duplicate.id = existing.id
        first = events.record(duplicate, new=True)
        duplicate.move(task_states.QUEUED, 1001.0)
        second = events.record(duplicate)
        results = await asyncio.gather(first.committed, second.committed, return_exceptions=True)
        assert [type(result) for result in results] == [errors.FailedPrecondition, errors.FailedPrecondition]
        assert [revision for revision, _, _ in stored_events(database)] == [1]

    run(scenario())


def test_a_change_becomes_one_watch_event_shared_by_every_watcher() -> None:
    change = Change(42, task_pb2.Task(id="t-1", owner="alice", status=task_states.RUNNING))
    event = change.event
    assert change.event is event
    assert (event.type, event.revision, event.task.id) == (task_pb2.WATCH_EVENT_TYPE_CHANGE, 42, "t-1")
