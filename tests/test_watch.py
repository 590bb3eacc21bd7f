"""WatchTasks: a snapshot, then every change with a revision; resuming from a revision replays exactly the gap."""

from __future__ import annotations

from collector import BackgroundCollector
from watch_stream import HEARTBEAT, SNAPSHOT, changes, ended, open_watch, snapshot_end, take_until

import simplane
from simplane._api.v1 import task_pb2


def warm_up(client) -> None:
    """Run one task so that the latest revision is above zero (since_revision=0 asks for a snapshot)."""
    assert client.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED


def assert_increasing(revisions: list[int]) -> None:
    assert revisions == sorted(set(revisions)), revisions


def test_snapshot_then_live_changes(cluster) -> None:
    client = cluster.client()
    before = client.tasks.submit(["true"])
    assert before.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED

    call, events = open_watch(cluster)
    snapshot = take_until(events, snapshot_end)
    assert [(e.type, e.task.id, e.task.status) for e in snapshot[:-1]] == [
        (SNAPSHOT, before.id, task_pb2.TASK_STATUS_SUCCEEDED)
    ]
    start = snapshot[-1].revision
    assert start >= snapshot[0].task.revision > 0

    after = client.tasks.submit(["true"])
    live = changes(take_until(events, ended(after.id)))
    call.cancel()
    assert {task_id for _, task_id, _ in live} == {after.id}
    assert_increasing([start] + [revision for revision, _, _ in live])
    statuses = [status for _, _, status in live]
    assert statuses == sorted(statuses)  # the lifecycle only moves forward
    assert statuses[-1] == task_pb2.TASK_STATUS_SUCCEEDED


def test_resume_from_a_revision_gets_exactly_the_missed_changes(cluster) -> None:
    client = cluster.client()
    warm_up(client)
    live_call, live_events = open_watch(cluster)
    start = take_until(live_events, snapshot_end)[-1].revision
    assert start > 0

    dropped_call, dropped_events = open_watch(cluster)
    take_until(dropped_events, snapshot_end)
    dropped_call.cancel()  # this watcher goes away while the tasks run

    first, second = client.tasks.submit(["true"]), client.tasks.submit(["false"])
    first.wait(timeout=30)
    second.wait(timeout=30)
    seen_live = changes(take_until(live_events, ended(first.id, second.id)))
    live_call.cancel()

    resumed_call, resumed_events = open_watch(cluster, since_revision=start)
    replayed = changes(take_until(resumed_events, ended(first.id, second.id)))
    assert replayed == seen_live
    assert_increasing([start] + [revision for revision, _, _ in replayed])

    # Going on from the last revision repeats nothing: the next change is a new task's.
    resumed_call.cancel()
    last = replayed[-1][0]
    assert last == max(first.info().revision, second.info().revision)
    call, events = open_watch(cluster, since_revision=last)
    third = client.tasks.submit(["true"])
    following = changes(take_until(events, ended(third.id)))
    call.cancel()
    assert {task_id for _, task_id, _ in following} == {third.id}
    assert following[0][0] > last


def test_watch_filters_by_task(cluster) -> None:
    client = cluster.client()
    warm_up(client)
    call, events = open_watch(cluster)
    start = take_until(events, snapshot_end)[-1].revision
    assert start > 0
    call.cancel()
    watched, other = client.tasks.submit(["true"]), client.tasks.submit(["true"])
    watched.wait(timeout=30)
    other.wait(timeout=30)

    call, events = open_watch(cluster, task_ids=[watched.id], since_revision=start)
    replayed = take_until(events, ended(watched.id))
    call.cancel()
    assert {e.task.id for e in replayed} == {watched.id}

    call, events = open_watch(cluster, task_ids=[watched.id])
    snapshot = take_until(events, snapshot_end)
    call.cancel()
    assert [e.task.id for e in snapshot if e.type == SNAPSHOT] == [watched.id]


def test_watch_filters_by_project(cluster) -> None:
    client = cluster.client()
    call, events = open_watch(cluster, project="mine")
    take_until(events, snapshot_end)
    client.tasks.submit(["true"], project="other")
    mine = client.tasks.submit(["true"], project="mine")
    seen = take_until(events, ended(mine.id))
    call.cancel()
    assert {e.task.id for e in seen} == {mine.id}


def test_idle_watch_sends_heartbeats(cluster) -> None:
    call, events = open_watch(cluster)
    take_until(events, snapshot_end)
    assert next(events).type == HEARTBEAT
    call.cancel()


def test_snapshot_limits_ended_tasks(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    client = cluster.client()
    queued = [client.tasks.submit(["true"]) for _ in range(2)]
    killed = [client.tasks.submit(["true"]) for _ in range(3)]
    for task in killed:
        task.kill()
        assert task.wait(timeout=30) == simplane.TaskStatus.KILLED
    call, events = open_watch(cluster, snapshot_ended_limit=2)
    snapshot = take_until(events, snapshot_end)
    call.cancel()
    ids = {e.task.id for e in snapshot if e.type == SNAPSHOT}
    assert ids == {task.id for task in queued} | {killed[2].id, killed[1].id}


def test_task_watch_follows_the_task_to_its_end(cluster) -> None:
    task = cluster.client().tasks.submit(["true"])
    seen = BackgroundCollector(task.watch()).join(timeout=30)
    assert seen[-1].status == simplane.TaskStatus.SUCCEEDED
    revisions = [info.revision for info in seen]
    assert revisions == sorted(set(revisions))


def test_snapshot_of_active_and_ended_tasks_after_a_restart(cluster_factory) -> None:
    """Active tasks come from the server's memory and ended ones from the database: after a restart the snapshot
    still holds both, newest first, only the caller's and only the project asked for."""
    cluster = cluster_factory(agents=0)
    client = cluster.client()
    other = cluster.client(api_key=cluster.create_user("other"))
    first = client.tasks.submit(["true"], project="mine")
    first.kill()
    assert first.wait(timeout=30) == simplane.TaskStatus.KILLED
    queued = client.tasks.submit(["true"], project="mine")
    client.tasks.submit(["true"], project="elsewhere")
    other.tasks.submit(["true"], project="mine")
    last = client.tasks.submit(["true"], project="mine")
    last.kill()
    assert last.wait(timeout=30) == simplane.TaskStatus.KILLED
    assert cluster.stop() == 0
    cluster.restart()

    call, events = open_watch(cluster, project="mine")
    snapshot = take_until(events, snapshot_end)
    assert [(e.task.id, e.task.status) for e in snapshot[:-1]] == [
        (last.id, task_pb2.TASK_STATUS_KILLED),
        (queued.id, task_pb2.TASK_STATUS_QUEUED),
        (first.id, task_pb2.TASK_STATUS_KILLED),
    ]
    assert {e.revision for e in snapshot} == {snapshot[-1].revision}
    assert snapshot[-1].revision >= max(e.task.revision for e in snapshot[:-1])
    queued.kill()
    live = changes(take_until(events, ended(queued.id)))
    call.cancel()
    assert live[-1][1:] == (queued.id, task_pb2.TASK_STATUS_KILLED)
    assert live[0][0] > snapshot[-1].revision


def test_many_watchers_each_get_every_change(cluster) -> None:
    """Each change's event is built once and shared: every watcher still gets the same changes, in order."""
    client = cluster.client()
    warm_up(client)
    watches = [open_watch(cluster) for _ in range(20)]
    for _, events in watches:
        take_until(events, snapshot_end)
    tasks = [client.tasks.submit(["true"]) for _ in range(5)]
    seen = []
    for call, events in watches:
        seen.append(changes(take_until(events, ended(*(task.id for task in tasks)))))
        call.cancel()
    assert all(changes_seen == seen[0] for changes_seen in seen)
    assert_increasing([revision for revision, _, _ in seen[0]])
    assert {task_id for _, task_id, _ in seen[0]} == {task.id for task in tasks}
