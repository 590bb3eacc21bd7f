"""Faults of the database: a write it refuses fails only the request that caused it, an outage answers
UNAVAILABLE (which the client retries), submits are idempotent, and a hung database does not keep the server
from stopping."""

from __future__ import annotations

import glob
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psycopg
import pytest
from cluster import Cluster
from postgres import PostgresServer
from waiting import eventually

import simplane
from simplane._api.v1 import task_pb2, task_pb2_grpc


def _refuse_tasks_named_poison(cluster: Cluster) -> None:
    """Makes the real database refuse the insert of any task named 'poison'."""
    if cluster.database_url is None:
        with sqlite3.connect(cluster.data_dir / "simplane.db") as connection:
            connection.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON tasks WHEN NEW.name = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'poison'); END"
            )
        return
    url = cluster.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.name = 'poison' THEN RAISE EXCEPTION 'poison'; END IF; RETURN NEW; END $$"
        )
        connection.execute("CREATE TRIGGER poison BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_poison()")


def test_a_refused_write_fails_only_its_submit(cluster: Cluster) -> None:
    _refuse_tasks_named_poison(cluster)
    admin = cluster.client()
    alice = cluster.client(api_key=cluster.create_user("alice"))
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)

    def poison() -> grpc.StatusCode:
        request = task_pb2.SubmitTaskRequest(command=["true"], name="poison", request_id="poison-1")
        with pytest.raises(grpc.RpcError) as refused:
            stub.SubmitTask(request, metadata=cluster.metadata(), timeout=30)
        return refused.value.code()

    with ThreadPoolExecutor(max_workers=8) as pool:
        refusals = [pool.submit(poison) for _ in range(2)]
        normal = [
            pool.submit(client.tasks.submit, ["true"], name="fine") for client in (admin, alice) for _ in range(3)
        ]
        assert [refusal.result(timeout=60) for refusal in refusals] == [grpc.StatusCode.FAILED_PRECONDITION] * 2
        tasks = [future.result(timeout=60) for future in normal]
    assert [task.wait(timeout=30) for task in tasks] == [simplane.TaskStatus.SUCCEEDED] * 6
    assert [task.name for task in admin.tasks.list()] == ["fine"] * 3
    assert [task.name for task in alice.tasks.list()] == ["fine"] * 3
    assert admin.tasks.submit(["true"], name="after").wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert cluster.output().count("the database refused") >= 1


def test_an_out_of_range_time_to_live_wedges_nothing(cluster: Cluster) -> None:
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    request = task_pb2.SubmitTaskRequest(command=["true"], name="forever")
    request.time_to_live.seconds = 2**63 - 1
    try:
        stub.SubmitTask(request, metadata=cluster.metadata(), timeout=30)
    except grpc.RpcError as error:  # refused at the edge is fine; failing inside is not
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    client = cluster.client()
    assert client.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert [task.name for task in client.tasks.list(status="QUEUED")] == []


def test_a_repeated_request_id_returns_the_first_task(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory(agents=0)
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    alice = cluster.metadata(cluster.create_user("alice"))

    def submit(request_id: str, metadata: tuple[tuple[str, str], ...] = cluster.metadata()) -> str:
        request = task_pb2.SubmitTaskRequest(command=["true"], request_id=request_id)
        return stub.SubmitTask(request, metadata=metadata, timeout=30).task.id

    first = submit("one")
    assert submit("one") == first
    assert submit("two") != first
    assert submit("one", alice) != first
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert len(set(pool.map(submit, ["three"] * 6))) == 1
    assert len(list(cluster.client().tasks.list())) == 3
    with pytest.raises(grpc.RpcError) as refused:
        submit("x" * 129)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ---- A PostgreSQL of the test's own, to stop and freeze ----------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    if not glob.glob("/usr/lib/postgresql/*/bin") and not os.environ.get("CI"):
        pytest.skip("the PostgreSQL server binaries are not installed")
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.thaw()
        server.stop()


@pytest.fixture
def postgres_cluster(tmp_path: Path, own_postgres: PostgresServer) -> Iterator[Cluster]:
    _, database_url = own_postgres.create_database()
    cluster = Cluster(tmp_path / "cluster", agents=1, database_url=database_url)
    try:
        yield cluster.start()
    finally:
        cluster.close()
        print(f"--- output of the cluster\n{cluster.output()}")


def test_an_outage_answers_unavailable_and_the_client_retries_through_it(
    postgres_cluster: Cluster, own_postgres: PostgresServer
) -> None:
    cluster = postgres_cluster
    client = cluster.client()
    before = client.tasks.submit(["true"], name="before")
    assert before.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    own_postgres.halt()

    calls: list[Callable[[], object]] = [
        lambda: stub.GetTask(task_pb2.GetTaskRequest(task_id=before.id), metadata=cluster.metadata(), timeout=30),
        lambda: stub.ListTasks(task_pb2.ListTasksRequest(), metadata=cluster.metadata(), timeout=30),
        lambda: stub.SubmitTask(
            task_pb2.SubmitTaskRequest(command=["true"], request_id="during"), metadata=cluster.metadata(), timeout=30
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as away:
            call()
        assert away.value.code() == grpc.StatusCode.UNAVAILABLE

    outcome: list[object] = []

    def submit_and_wait() -> None:
        task = client.tasks.submit(["true"], name="across")
        outcome.append(task.wait(timeout=60))

    submitting = threading.Thread(target=submit_and_wait)
    submitting.start()
    # A client retrying for one second gives up: the database is still away.
    impatient = simplane.Client(address=cluster.address, api_key=cluster.api_key, retry_timeout=1)
    with impatient, pytest.raises(simplane.Unavailable):
        impatient.tasks.get(before.id)
    own_postgres.resume()
    submitting.join(timeout=90)
    assert outcome == [simplane.TaskStatus.SUCCEEDED]
    assert [task.name for task in client.tasks.list()] == ["across", "before"]
    assert client.task(before.id).info().status == simplane.TaskStatus.SUCCEEDED


def test_sigterm_stops_the_server_while_postgresql_is_frozen(
    postgres_cluster: Cluster, own_postgres: PostgresServer
) -> None:
    cluster = postgres_cluster
    client = cluster.client()
    task = client.tasks.submit(["true"])
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    own_postgres.freeze()
    with pytest.raises(grpc.RpcError) as hung:  # the read waits on the frozen database
        stub.GetTask(task_pb2.GetTaskRequest(task_id=task.id), metadata=cluster.metadata(), timeout=1)
    assert hung.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert cluster.stop(timeout=10) is not None
    own_postgres.thaw()
    eventually(lambda: "closing without it" in cluster.output() or "stopping without them" in cluster.output())
