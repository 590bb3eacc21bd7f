"""Reading WatchTasks streams on raw stubs, where revisions and event types are visible."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from simplane._api.v1 import task_pb2, task_pb2_grpc

SNAPSHOT = task_pb2.WATCH_EVENT_TYPE_SNAPSHOT
SNAPSHOT_END = task_pb2.WATCH_EVENT_TYPE_SNAPSHOT_END
CHANGE = task_pb2.WATCH_EVENT_TYPE_CHANGE
HEARTBEAT = task_pb2.WATCH_EVENT_TYPE_HEARTBEAT
TERMINAL = {
    task_pb2.TASK_STATUS_SUCCEEDED,
    task_pb2.TASK_STATUS_FAILED,
    task_pb2.TASK_STATUS_KILLED,
    task_pb2.TASK_STATUS_TIMED_OUT,
    task_pb2.TASK_STATUS_LOST,
}


def open_watch(cluster, **request) -> tuple[grpc.Call, Iterator[task_pb2.WatchTasksResponse]]:
    """A WatchTasks call (cancel it when done) and an iterator over its events, with a deadline."""
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    call = stub.WatchTasks(task_pb2.WatchTasksRequest(**request), metadata=cluster.metadata(), timeout=60)
    return call, iter(call)


def take_until(
    events: Iterator[task_pb2.WatchTasksResponse], done: Callable[[list[task_pb2.WatchTasksResponse]], bool]
) -> list[task_pb2.WatchTasksResponse]:
    """Read events, heartbeats left out, until `done` holds for what was read."""
    taken: list[task_pb2.WatchTasksResponse] = []
    for event in events:
        if event.type != HEARTBEAT:
            taken.append(event)
            if done(taken):
                return taken
    raise AssertionError(f"the watch ended early after {len(taken)} events")


def ended(*task_ids: str) -> Callable[[list[task_pb2.WatchTasksResponse]], bool]:
    """True once a CHANGE showed each of the tasks in a terminal status."""

    def check(events: list[task_pb2.WatchTasksResponse]) -> bool:
        finished = {e.task.id for e in events if e.type == CHANGE and e.task.status in TERMINAL}
        return finished >= set(task_ids)

    return check


def snapshot_end(events: list[task_pb2.WatchTasksResponse]) -> bool:
    return events[-1].type == SNAPSHOT_END


def changes(events: list[task_pb2.WatchTasksResponse]) -> list[tuple[int, str, int]]:
    return [(e.revision, e.task.id, e.task.status) for e in events if e.type == CHANGE]
