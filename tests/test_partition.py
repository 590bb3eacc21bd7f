"""Network partitions: a machine cut off is UNREACHABLE and its tasks run on; back within the grace period, every
line arrives once and the tasks end normally; away longer, its tasks are LOST."""

from __future__ import annotations

import re
import time

from collector import BackgroundCollector
from programs import numbered_lines, python
from tcp_proxy import TcpProxy
from waiting import eventually
from watch_stream import CHANGE, SNAPSHOT

import simplane
from simplane._api.v1 import task_pb2, task_pb2_grpc

RUNNING = simplane.TaskStatus.RUNNING
CUT = 60.0  # seconds without a network path between the agent and the server
LINES = 750  # one every 0.1 s: the task outlives the cut by a dozen seconds
WARNING = re.compile(r"machine m-[0-9a-f]+ unreachable since \d\d:\d\d:\d\d UTC")
SLEEP_300 = python("import time\ntime.sleep(300)")


def raw_task(cluster, task_id: str) -> task_pb2.Task:
    """The task as the API sends it, with its warning (which the client's TaskInfo leaves out)."""
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    return stub.GetTask(task_pb2.GetTaskRequest(task_id=task_id), metadata=cluster.metadata(), timeout=10).task


def watch_changes(cluster, task_ids: list[str]) -> BackgroundCollector:
    """The WatchTasks events of these tasks, collected from now on; the stream runs for up to five minutes."""
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    request = task_pb2.WatchTasksRequest(task_ids=task_ids)
    return BackgroundCollector(stub.WatchTasks(request, metadata=cluster.metadata(), timeout=300))


def shown(watcher: BackgroundCollector) -> list[tuple[int, bool]]:
    """(status, whether it carries the unreachable warning) of each state the watcher was shown."""
    return [
        (e.task.status, bool(WARNING.fullmatch(e.task.warning))) for e in watcher.items if e.type in (SNAPSHOT, CHANGE)
    ]


def machine_states(client) -> list[str]:
    return [machine.state for machine in client.machine_groups.machines()]


def test_a_task_runs_through_a_60_s_cut_and_every_line_arrives_once(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)  # heartbeats every 0.5 s; the default grace period of 10 minutes
    proxy = TcpProxy(cluster.address)
    try:
        cluster.start_agent(slots=2, server=proxy.address)
        client = cluster.client()  # straight to the server, not through the proxy
        task = client.tasks.submit(numbered_lines(LINES, every=0.1))
        doomed = client.tasks.submit(SLEEP_300)
        follower = BackgroundCollector(task.logs(follow=True))
        watcher = watch_changes(cluster, [task.id])
        eventually(lambda: len(follower) >= 20 and doomed.info().status == RUNNING, timeout=30)

        proxy.cut()
        cut_at = time.monotonic()
        eventually(lambda: machine_states(client) == ["UNREACHABLE"], timeout=20)
        assert WARNING.fullmatch(raw_task(cluster, task.id).warning), raw_task(cluster, task.id)
        assert doomed.kill().status == RUNNING  # the kill waits for the machine
        seen = set()

        def cut_over() -> bool:
            shown = raw_task(cluster, task.id)
            seen.add((shown.status, bool(WARNING.fullmatch(shown.warning)), tuple(machine_states(client))))
            return time.monotonic() - cut_at >= CUT

        eventually(cut_over, timeout=CUT + 30, interval=1)
        assert seen == {(task_pb2.TASK_STATUS_RUNNING, True, ("UNREACHABLE",))}
        assert doomed.info().status == RUNNING
        assert len(follower) < LINES, "the task printed everything before the cut ended; the test proves less"
        proxy.restore()

        eventually(lambda: machine_states(client) == ["CONNECTED"], timeout=30)
        eventually(lambda: raw_task(cluster, task.id).warning == "", timeout=10)
        assert doomed.wait(timeout=60) == simplane.TaskStatus.KILLED  # the kill reached the machine once back
        lines = follower.join(timeout=120)
        assert [line.text for line in lines if line.stream == "stdout"] == [f"line {i}" for i in range(LINES)]
        assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
        assert [line.text for line in task.logs()] == [f"line {i}" for i in range(LINES)]  # stored once, too

        # Watchers saw the warning come (once) and go, while the status stayed RUNNING.
        eventually(lambda: shown(watcher)[-1:] == [(task_pb2.TASK_STATUS_SUCCEEDED, False)], timeout=10)
        changes = shown(watcher)
        warned = [i for i, (_, warning) in enumerate(changes) if warning]
        assert len(warned) == 1, changes
        running = task_pb2.TASK_STATUS_RUNNING
        assert changes[warned[0] - 1 : warned[0] + 2] == [(running, False), (running, True), (running, False)]
    finally:
        proxy.close()


def test_a_machine_away_past_the_grace_period_loses_its_tasks(cluster_factory) -> None:
    cluster = cluster_factory(agents=0, env={"SIMPLANE_MACHINE_LOST_AFTER": "4"})
    proxy = TcpProxy(cluster.address)
    try:
        cluster.start_agent(server=proxy.address)
        client = cluster.client()
        task = client.tasks.submit(SLEEP_300)
        watcher = watch_changes(cluster, [task.id])
        eventually(lambda: task.info().status == RUNNING, timeout=30)

        cut_at = time.time()
        proxy.cut()
        assert task.wait(timeout=30) == simplane.TaskStatus.LOST
        info = task.info()
        assert "longer than the grace period of 4s" in info.error
        # Unreachable first, with the task RUNNING and warned; lost once the grace period (from the last message
        # heard, at most a heartbeat before the cut) ran out.
        eventually(
            lambda: shown(watcher)[-2:] == [(task_pb2.TASK_STATUS_RUNNING, True), (task_pb2.TASK_STATUS_LOST, False)],
            timeout=10,
        )
        assert info.history[-1].time.timestamp() - cut_at >= 4 - 0.5 - 0.1
        assert client.machine_groups.machines() == []
    finally:
        proxy.close()
