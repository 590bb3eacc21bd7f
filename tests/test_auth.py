"""Auth: every call needs a valid key of the right kind, and another user's task does not exist for you."""

from __future__ import annotations

import grpc
import pytest
from programs import SLEEP_60, python
from waiting import eventually

import simplane
from simplane._api.v1 import (
    account_pb2,
    account_pb2_grpc,
    agent_pb2,
    agent_pb2_grpc,
    machine_group_pb2,
    machine_group_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)

UNKNOWN_KEY = "sp_000000000000_" + "x" * 32


def test_another_users_task_is_not_found(cluster, tmp_path) -> None:
    alice = cluster.client()
    running = alice.tasks.submit(SLEEP_60, project="secret")
    finished = alice.tasks.submit(python("open('out.txt', 'w').write('x')"), project="secret")
    assert finished.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    bob_key = cluster.create_user("bob")
    bob = cluster.client(api_key=bob_key)

    for task in (running, finished):
        with pytest.raises(simplane.NotFound):
            bob.tasks.get(task.id).info()
        with pytest.raises(simplane.NotFound):
            bob.tasks.get(task.id).kill()
        with pytest.raises(simplane.NotFound):
            list(bob.tasks.get(task.id).logs())
        with pytest.raises(simplane.NotFound):
            bob.tasks.get(task.id).list_files()
        with pytest.raises(simplane.NotFound):
            bob.tasks.get(task.id).download_outputs(str(tmp_path / "stolen"))
    assert [info.id for info in bob.tasks.list()] == []
    assert [info.id for info in bob.tasks.list(project="secret")] == []

    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.TailLogs(task_pb2.TailLogsRequest(task_id=running.id), metadata=cluster.metadata(bob_key)))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND

    # Bob's own tasks work, and Alice's task still runs.
    assert bob.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert running.info().status == simplane.TaskStatus.RUNNING


def test_another_users_outputs_watches_and_machine_tasks_are_hidden(cluster_factory, tmp_path) -> None:
    cluster = cluster_factory(agents=0)
    cluster.start_agent(slots=3)
    alice = cluster.client(api_key=cluster.create_user("alice"))
    bob_key = cluster.create_user("bob")
    bob = cluster.client(api_key=bob_key)
    running = alice.tasks.submit(SLEEP_60)
    finished = alice.tasks.submit(python("open('out.txt', 'w').write('x')"))
    assert finished.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    eventually(lambda: running.info().status == simplane.TaskStatus.RUNNING, timeout=30)
    storage = cluster.stub(storage_pb2_grpc.StorageServiceStub)
    stolen = tmp_path / "stolen"

    for task in (running, finished):
        with pytest.raises(simplane.NotFound, match=task.id):
            bob.task(task.id).download_outputs(stolen)
        with pytest.raises(grpc.RpcError) as raised:
            request = storage_pb2.DownloadFilesRequest(prefix=f"tasks/{task.id}/outputs/")
            list(storage.DownloadFiles(request, metadata=cluster.metadata(bob_key), timeout=10))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND, raised.value.details()
        with pytest.raises(simplane.NotFound, match=task.id):
            next(bob.tasks.watch(task_ids=[task.id]))
        with pytest.raises(simplane.NotFound, match=task.id):
            bob.task(task.id).wait(timeout=10)
    assert [path for path in stolen.rglob("*") if path.is_file()] == []

    # Naming one of Alice's tasks among his own still fails the whole watch.
    mine = bob.tasks.submit(SLEEP_60)
    eventually(lambda: mine.info().status == simplane.TaskStatus.RUNNING, timeout=30)
    with pytest.raises(simplane.NotFound, match=running.id):
        next(bob.tasks.watch(task_ids=[mine.id, running.id]))
    # The machine runs both tasks; each user sees only their own among its running tasks.
    assert [machine.running_task_ids for machine in bob.machine_groups.machines()] == [[mine.id]]
    assert [machine.running_task_ids for machine in alice.machine_groups.machines()] == [[running.id]]

    # Alice gets her ended task's outputs, but not yet those of the one still running.
    assert [path.name for path in finished.download_outputs(tmp_path / "mine")] == ["out.txt"]
    with pytest.raises(simplane.FailedPrecondition, match=running.id):
        running.download_outputs(tmp_path / "early")
    assert running.info().status == simplane.TaskStatus.RUNNING


def test_wrong_key_is_unauthenticated(cluster) -> None:
    client = cluster.client(api_key=UNKNOWN_KEY)
    with pytest.raises(simplane.Unauthenticated):
        list(client.tasks.list())
    with pytest.raises(simplane.Unauthenticated):
        client.tasks.submit(["true"])


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer " + UNKNOWN_KEY),), (("authorization", "Basic abc"),)],
    ids=["missing", "unknown", "not-bearer"],
)
def test_every_rpc_needs_a_valid_key(cluster, metadata) -> None:
    tasks = cluster.stub(task_pb2_grpc.TaskServiceStub)
    calls = {
        "SubmitTask": lambda: tasks.SubmitTask(task_pb2.SubmitTaskRequest(command=["true"]), metadata=metadata),
        "ListTasks": lambda: tasks.ListTasks(task_pb2.ListTasksRequest(), metadata=metadata),
        "WatchTasks": lambda: next(tasks.WatchTasks(task_pb2.WatchTasksRequest(), metadata=metadata)),
        "TailLogs": lambda: next(tasks.TailLogs(task_pb2.TailLogsRequest(task_id="t-x"), metadata=metadata)),
        "WhoAmI": lambda: cluster.stub(account_pb2_grpc.AccountServiceStub).WhoAmI(
            account_pb2.WhoAmIRequest(), metadata=metadata
        ),
    }
    codes = {}
    for name, call in calls.items():
        try:
            call()
        except grpc.RpcError as error:
            codes[name] = error.code()
        else:
            codes[name] = grpc.StatusCode.OK
    assert codes == dict.fromkeys(calls, grpc.StatusCode.UNAUTHENTICATED)


def test_a_revoked_key_stops_working(cluster) -> None:
    account = cluster.stub(account_pb2_grpc.AccountServiceStub)
    created = account.CreateApiKey(
        account_pb2.CreateApiKeyRequest(description="ci"), metadata=cluster.metadata(), timeout=10
    )
    me = account.WhoAmI(account_pb2.WhoAmIRequest(), metadata=cluster.metadata(created.secret), timeout=10)
    assert me.api_key_id == created.api_key.id
    account.RevokeApiKey(account_pb2.RevokeApiKeyRequest(id=created.api_key.id), metadata=cluster.metadata())
    with pytest.raises(grpc.RpcError) as raised:
        account.WhoAmI(account_pb2.WhoAmIRequest(), metadata=cluster.metadata(created.secret), timeout=10)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_only_admins_create_users_and_agent_tokens(cluster) -> None:
    bob_key = cluster.create_user("bob")
    bob = cluster.metadata(bob_key)
    with pytest.raises(grpc.RpcError) as raised:
        cluster.stub(account_pb2_grpc.AccountServiceStub).CreateUser(
            account_pb2.CreateUserRequest(name="eve"), metadata=bob, timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as raised:
        cluster.stub(machine_group_pb2_grpc.MachineGroupServiceStub).CreateAgentToken(
            machine_group_pb2.CreateAgentTokenRequest(), metadata=bob, timeout=10
        )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(simplane.PermissionDenied):
        cluster.client(api_key=bob_key).account.create_user("eve")


def test_up_writes_a_working_admin_key(cluster) -> None:
    me = cluster.stub(account_pb2_grpc.AccountServiceStub).WhoAmI(
        account_pb2.WhoAmIRequest(), metadata=cluster.metadata(), timeout=10
    )
    assert me.user.admin


def test_agent_tokens_and_user_keys_only_open_their_own_services(cluster) -> None:
    agent_token = cluster.create_agent_token()
    with pytest.raises(simplane.PermissionDenied, match="agent"):
        cluster.client(api_key=agent_token).tasks.submit(["true"])
    tasks = cluster.stub(task_pb2_grpc.TaskServiceStub)
    with pytest.raises(grpc.RpcError) as raised:
        tasks.ListTasks(task_pb2.ListTasksRequest(), metadata=cluster.metadata(agent_token), timeout=10)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED

    agents = cluster.stub(agent_pb2_grpc.AgentServiceStub)

    def connect(key: str, machine_group: str = "local") -> None:
        hello = agent_pb2.AgentHello(agent_id="intruder", machine_group=machine_group, hostname="nowhere", slots=1)
        responses = agents.Connect(
            iter([agent_pb2.ConnectRequest(hello=hello)]), metadata=cluster.metadata(key), timeout=10
        )
        next(responses)

    with pytest.raises(grpc.RpcError) as raised:
        connect(cluster.api_key)  # the admin's user key is still not an agent token
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        connect(agent_token, machine_group="elsewhere")  # a token joins only its own machine group
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value.details()

    # Neither refusal disturbed the cluster.
    assert cluster.client().tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
