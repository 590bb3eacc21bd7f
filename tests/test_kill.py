"""Stopping tasks: kill (SIGTERM to the process group, SIGKILL after the grace period) and time_to_live."""

from __future__ import annotations

import time

from cluster import alive
from google.protobuf.duration_pb2 import Duration
from programs import SLEEP_60, python
from task_pids import host_process
from waiting import eventually

import simplane
from simplane._api.v1 import task_pb2, task_pb2_grpc


def running(task) -> None:
    eventually(lambda: task.info().status == simplane.TaskStatus.RUNNING, timeout=30)


def first_line(task) -> str:
    """The task's first stdout line, once it has printed one."""
    return eventually(lambda: next((line.text for line in task.logs(stream="stdout")), None), timeout=30)


def test_kill_a_running_task(cluster) -> None:
    task = cluster.client().tasks.submit(SLEEP_60)
    running(task)
    started = time.monotonic()
    task.kill()
    assert task.wait(timeout=20) == simplane.TaskStatus.KILLED
    assert time.monotonic() - started < 5
    info = task.info()
    assert info.history[-1].status == simplane.TaskStatus.KILLED
    assert simplane.TaskStatus.RUNNING in [entry.status for entry in info.history]


def test_kill_reaches_the_whole_process_group(cluster) -> None:
    task = cluster.client().tasks.submit(["sh", "-c", "sleep 60 & echo $!; wait"])
    child = host_process([cluster.server_pid], int(first_line(task)))
    task.kill()
    assert task.wait(timeout=20) == simplane.TaskStatus.KILLED
    eventually(lambda: not alive(child), timeout=10)


def test_a_task_ignoring_sigterm_is_sigkilled_after_the_grace_period(cluster) -> None:
    stubborn = python(
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(60)\n"
    )
    task = cluster.client().tasks.submit(stubborn)
    process = host_process([cluster.server_pid], int(first_line(task)))
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    started = time.monotonic()
    stub.KillTask(
        task_pb2.KillTaskRequest(task_id=task.id, grace_period=Duration(seconds=1)),
        metadata=cluster.metadata(),
        timeout=10,
    )
    assert task.wait(timeout=20) == simplane.TaskStatus.KILLED
    assert 1 <= time.monotonic() - started < 10
    eventually(lambda: not alive(process), timeout=10)


def test_kill_a_queued_task(cluster_factory) -> None:
    task = cluster_factory(agents=0).client().tasks.submit(SLEEP_60)
    task.kill()
    assert task.wait(timeout=10) == simplane.TaskStatus.KILLED
    statuses = [entry.status for entry in task.info().history]
    assert simplane.TaskStatus.RUNNING not in statuses


def test_time_to_live_times_out_a_long_task(cluster) -> None:
    task = cluster.client().tasks.submit(SLEEP_60, time_to_live="1s")
    assert task.wait(timeout=20) == simplane.TaskStatus.TIMED_OUT
    assert task.info().history[-1].status == simplane.TaskStatus.TIMED_OUT


def test_time_to_live_leaves_a_short_task_alone(cluster) -> None:
    task = cluster.client().tasks.submit(["true"], time_to_live="30s")
    assert task.wait(timeout=20) == simplane.TaskStatus.SUCCEEDED
