"""A full data dir: output is never acknowledged unstored, the task says why it waits, submits and uploads are
refused at once, the server says so once; when space returns the stored log is exact and nothing is lost.

The data dir is a small tmpfs the test mounts (root only, as in CI); the database stays off it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cluster import Cluster
from collector import BackgroundCollector
from postgres import PostgresServer
from programs import python
from waiting import eventually

import simplane
from simplane._api.v1 import task_pb2, task_pb2_grpc
from simplane._protocol.transfer import INCOMING_PREFIX

FULL_LINE = "is full: submits and uploads are refused"
FREE_LINE = "has space again"
OUTPUT_HELD = "the server's data dir is full; output is held on the machine until space returns"
BEFORE, AFTER = 100, 900  # lines printed before the disk fills, and while it is full
# ~70 bytes a line: what is printed while full is many times the page a tmpfs file may still have room in.
EXPECTED = [f"line {i:04d} {'x' * 60}" for i in range(BEFORE + AFTER)]


def _program(go: Path, done: Path) -> list[str]:
    """Prints BEFORE lines, waits for `go` (the test filled the disk), prints AFTER more, then writes `done`."""
    return python(
        "import os, time\n"
        f"lines = [f'line {{i:04d}} {'x' * 60}' for i in range({BEFORE + AFTER})]\n"
        f"for line in lines[:{BEFORE}]:\n"
        "    print(line, flush=True)\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    time.sleep(0.02)\n"
        f"for line in lines[{BEFORE}:]:\n"
        "    print(line, flush=True)\n"
        "    time.sleep(0.002)\n"
        f"open({str(done)!r}, 'w').close()\n"
    )


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted after the test (and after the cluster on it stopped)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount_point = tmp_path / "data"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


@pytest.fixture
def small_disk_cluster(
    tmp_path: Path, small_data_dir: Path, postgres: PostgresServer | None
) -> Iterator[Callable[..., Cluster]]:
    """Starts `simplane up` with its data dir on the tmpfs and its database elsewhere; its one agent works
    elsewhere too, or, with `local_agent=True`, is up's own, working in the data dir."""
    root = tmp_path / "cluster"
    database = None if postgres is None else postgres.create_database()
    url = f"sqlite:///{tmp_path / 'simplane.db'}" if database is None else database[1]
    clusters: list[Cluster] = []

    def start(*, local_agent: bool = False) -> Cluster:
        cluster = Cluster(root, agents=int(local_agent), database_url=url, data_dir=small_data_dir)
        clusters.append(cluster)
        cluster.start()
        if not local_agent:
            cluster.start_agent()
        return cluster

    try:
        yield start
    finally:
        for cluster in clusters:
            cluster.close()
            print(f"--- output of the cluster in {root}\n{cluster.output()}")
        if postgres is not None and database is not None:
            postgres.drop_database(database[0])


def fill(directory: Path) -> Path:
    """A file that takes every free byte of the filesystem, down to the last page."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (1024 * 1024, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\1" * block)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def assert_submit_refused(cluster: Cluster) -> None:
    """SubmitTask answers RESOURCE_EXHAUSTED at once, rather than waiting on a write that cannot succeed."""
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitTask(task_pb2.SubmitTaskRequest(command=["true"]), metadata=cluster.metadata(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == "no space left on the server's data dir"
    assert time.monotonic() - started < 5


def assert_nothing_lost(cluster: Cluster, task, follower: BackgroundCollector) -> None:
    """The task succeeds; follower, stored file and a fresh read hold every line once, no NUL, no gap."""
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    followed = [line.text for line in follower.join(timeout=30) if line.stream == "stdout"]
    assert followed == EXPECTED
    stored = (cluster.data_dir / "logs" / task.id / "stdout").read_bytes()
    assert stored == "".join(f"{line}\n" for line in EXPECTED).encode()
    assert [line.text for line in task.logs()] == EXPECTED


def test_full_data_dir_holds_output_on_the_machine_and_loses_nothing(small_disk_cluster, tmp_path: Path) -> None:
    cluster = small_disk_cluster()
    client = cluster.client()
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    go, done = tmp_path / "go", tmp_path / "done"
    task = client.tasks.submit(_program(go, done))
    follower = BackgroundCollector(task.logs(follow=True))
    eventually(lambda: len(follower) >= BEFORE, timeout=30)

    def server_task() -> task_pb2.Task:
        return stub.GetTask(task_pb2.GetTaskRequest(task_id=task.id), metadata=cluster.metadata(), timeout=10).task

    filler = fill(cluster.data_dir)
    go.touch()
    eventually(lambda: server_task().warning == OUTPUT_HELD, timeout=30)
    eventually(done.exists, timeout=30)
    # The process ended, but its output is not all stored: the task must not end. Polled for a few seconds,
    # longer than the agent takes to report the end.
    with pytest.raises(AssertionError, match="not true within"):
        eventually(lambda: server_task().status != task_pb2.TASK_STATUS_RUNNING, timeout=4)
    assert server_task().warning == OUTPUT_HELD

    assert_submit_refused(cluster)

    upload = tmp_path / "upload.txt"
    upload.write_text("input\n")
    with pytest.raises(simplane.errors.ResourceExhausted):
        client.storage.upload(upload, prefix="inputs/full/")
    assert list(cluster.data_dir.rglob(f"{INCOMING_PREFIX}*")) == []
    assert cluster.output().count(FULL_LINE) == 1

    filler.unlink()
    assert_nothing_lost(cluster, task, follower)
    assert server_task().warning == ""
    eventually(lambda: cluster.output().count(FREE_LINE) == 1, timeout=10)
    assert cluster.output().count(FULL_LINE) == 1


def test_local_agent_on_the_full_disk_holds_its_task_until_space_returns(small_disk_cluster, tmp_path: Path) -> None:
    """`up`'s own agent spools in the data dir: on the full disk it stops reading the task's pipe (the task waits
    on its writes) instead of failing the task, and goes on when space returns."""
    cluster = small_disk_cluster(local_agent=True)
    go, done = tmp_path / "go", tmp_path / "done"
    task = cluster.client().tasks.submit(_program(go, done))
    follower = BackgroundCollector(task.logs(follow=True))
    eventually(lambda: len(follower) >= BEFORE, timeout=30)
    filler = fill(cluster.data_dir)
    go.touch()
    eventually(lambda: "no space left in the work dir" in cluster.output(), timeout=30)
    assert not done.exists()
    assert task.info().status == simplane.TaskStatus.RUNNING
    assert_submit_refused(cluster)

    filler.unlink()
    assert_nothing_lost(cluster, task, follower)
