"""Machine credentials: a join token only joins; each machine reaches only its own tasks with its own credential,
keeps it across restarts, and users see only the machines of their own tasks."""

from __future__ import annotations

import hashlib
import json
import stat

import grpc
import pytest
from programs import SLEEP_60, python
from waiting import eventually

import simplane
from simplane._api.v1 import agent_pb2, agent_pb2_grpc, storage_pb2

RUNNING = simplane.TaskStatus.RUNNING
REFUSED_TOKEN = "sp_000000000000_" + "x" * 32  # a token the server refuses, were it used


def stored_identity(agent) -> dict:
    """The machine id and credential the agent keeps in its work dir, which must be readable by its user only."""
    path = agent.work_dir / "machine.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return json.loads(path.read_text())


def join(cluster, key: str, machine_group: str = "local") -> agent_pb2.JoinResponse:
    stub = cluster.stub(agent_pb2_grpc.AgentServiceStub)
    request = agent_pb2.JoinRequest(machine_group=machine_group, hostname="intruder", version="0")
    return stub.Join(request, metadata=cluster.metadata(key), timeout=10)


def code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def connect(cluster, key: str, agent_id: str) -> None:
    """Opens Connect with a hello and reads the answer (the welcome, were the hello accepted)."""
    hello = agent_pb2.AgentHello(agent_id=agent_id, machine_group="local", hostname="intruder", slots=1)
    stub = cluster.stub(agent_pb2_grpc.AgentServiceStub)
    responses = stub.Connect(iter([agent_pb2.ConnectRequest(hello=hello)]), metadata=cluster.metadata(key), timeout=10)
    next(responses)


def download_inputs(cluster, key: str, task_id: str) -> list[storage_pb2.FileChunk]:
    stub = cluster.stub(agent_pb2_grpc.AgentServiceStub)
    request = agent_pb2.DownloadInputsRequest(task_id=task_id)
    return [r.chunk for r in stub.DownloadInputs(request, metadata=cluster.metadata(key), timeout=10)]


def upload_outputs(cluster, key: str, task_id: str) -> None:
    stub = cluster.stub(agent_pb2_grpc.AgentServiceStub)
    data = b"planted"
    chunk = storage_pb2.FileChunk(path="planted.txt", data=data, sha256=hashlib.sha256(data).hexdigest())
    stub.UploadOutputs(
        iter([agent_pb2.UploadOutputsRequest(task_id=task_id, chunk=chunk)]), metadata=cluster.metadata(key), timeout=10
    )


def test_a_join_token_can_only_join(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    token = cluster.create_agent_token()
    task = cluster.client().tasks.submit(["true"])  # queued: no agent

    assert code(lambda: connect(cluster, token, "m-000000000000")) == grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: download_inputs(cluster, token, task.id)) == grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: upload_outputs(cluster, token, task.id)) == grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: join(cluster, token, machine_group="elsewhere")) == grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: join(cluster, cluster.api_key)) == grpc.StatusCode.PERMISSION_DENIED  # a user key

    joined = join(cluster, token)
    assert joined.machine_id.startswith("m-")
    assert joined.credential.startswith(f"sp_{joined.machine_id}_")
    assert join(cluster, token).machine_id != joined.machine_id  # each join is a new machine
    # The credential is no join token, and no user key.
    assert code(lambda: join(cluster, joined.credential)) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(simplane.PermissionDenied):
        list(cluster.client(api_key=joined.credential).tasks.list())


def test_a_machine_reaches_only_the_tasks_assigned_to_it(cluster_factory, tmp_path) -> None:
    cluster = cluster_factory(agents=0)
    agent = cluster.start_agent(slots=1)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "secret.txt").write_text("for my machine only")
    go = tmp_path / "go"
    task = cluster.client().tasks.submit(
        python(
            "import os, time\n"
            f"while not os.path.exists({str(go)!r}):\n"
            "    time.sleep(0.05)\n"
            "open('result.txt', 'w').write(open('secret.txt').read())\n"
        ),
        inputs=inputs,
    )
    eventually(lambda: task.info().status == RUNNING, timeout=30)
    intruder = join(cluster, cluster.create_agent_token()).credential

    assert code(lambda: download_inputs(cluster, intruder, task.id)) == grpc.StatusCode.NOT_FOUND
    assert code(lambda: upload_outputs(cluster, intruder, task.id)) == grpc.StatusCode.NOT_FOUND
    # The machine the task is assigned to gets its inputs with its own credential.
    own = stored_identity(agent)["credential"]
    assert b"".join(chunk.data for chunk in download_inputs(cluster, own, task.id)) == b"for my machine only"
    assert task.info().status == RUNNING, "the task ended before the intruder tried; the test proves nothing"

    go.touch()
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    outputs = task.download_outputs(tmp_path / "outputs")
    assert sorted(path.name for path in outputs) == ["result.txt"]


def test_another_machines_id_is_refused_and_its_tasks_run_on(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    agent = cluster.start_agent()
    client = cluster.client()
    task = client.tasks.submit(SLEEP_60)
    eventually(lambda: task.info().status == RUNNING, timeout=30)
    victim = stored_identity(agent)["machine_id"]
    token = cluster.create_agent_token()
    intruder = join(cluster, token).credential

    # Knowing the machine's id (every admin sees it) gives nothing, with a machine credential or a join token.
    assert code(lambda: connect(cluster, intruder, victim)) == grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: connect(cluster, token, victim)) == grpc.StatusCode.PERMISSION_DENIED

    assert [(m.id, m.state) for m in client.machine_groups.machines()] == [(victim, "CONNECTED")]
    assert client.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    info = task.info()
    assert (info.status, info.error) == (RUNNING, "")


def test_users_see_only_the_machines_of_their_tasks(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    cluster.start_agent(slots=1)
    cluster.start_agent(slots=1)
    admin = cluster.client()
    eventually(lambda: len(admin.machine_groups.machines()) == 2, timeout=30)
    alice = cluster.client(api_key=cluster.create_user("alice"))
    bob = cluster.client(api_key=cluster.create_user("bob"))
    task = alice.tasks.submit(SLEEP_60)
    eventually(lambda: task.info().status == RUNNING, timeout=30)

    [seen] = alice.machine_groups.machines()
    assert (seen.id, seen.state, seen.running_task_ids) == (task.info().machine_id, "CONNECTED", [task.id])
    assert (seen.hostname, seen.slots, seen.connect_time) == ("", 0, None)  # details are for admins
    assert bob.machine_groups.machines() == []

    every = admin.machine_groups.machines()
    assert sorted(m.running_task_ids for m in every) == [[], [task.id]]
    assert all(m.hostname and m.slots == 1 and m.connect_time for m in every)


def test_a_restarted_agent_is_the_same_machine(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    agent = cluster.start_agent()
    client = cluster.client()
    task = client.tasks.submit(SLEEP_60)
    eventually(lambda: task.info().status == RUNNING, timeout=30)
    machine_id = stored_identity(agent)["machine_id"]
    assert task.info().machine_id == machine_id

    agent.kill()
    # A token the server would refuse: the agent joins no more, it uses its stored credential.
    cluster.start_agent(work_dir=agent.work_dir, token=REFUSED_TOKEN)
    # Its task died with it; the machine says so when it is back, long before the grace period (10 minutes).
    assert task.wait(timeout=30) == simplane.TaskStatus.LOST
    assert f"machine {machine_id} restarted" in task.info().error
    eventually(lambda: [(m.id, m.state) for m in client.machine_groups.machines()] == [(machine_id, "CONNECTED")])
    assert client.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED


def test_a_refused_credential_stops_the_agent_with_one_line(cluster_factory) -> None:
    first = cluster_factory(agents=0)
    agent = first.start_agent()
    eventually(lambda: len(first.client().machine_groups.machines()) == 1, timeout=30)
    agent.kill()

    other = cluster_factory(agents=0)  # knows nothing of the machine
    again = other.start_agent(work_dir=agent.work_dir)
    assert again.wait(timeout=30) == 1
    lines = again.log.read_text().splitlines()
    assert len(lines) == 1 and "refused the credential of machine" in lines[0], lines


def test_up_keeps_its_local_agents_machines_across_restarts(cluster) -> None:
    client = cluster.client()
    before = eventually(lambda: [m.id for m in client.machine_groups.machines()], timeout=30)
    assert cluster.stop() == 0
    cluster.restart()
    eventually(
        lambda: [(m.id, m.state) for m in client.machine_groups.machines()] == [(before[0], "CONNECTED")], timeout=30
    )
    assert client.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
