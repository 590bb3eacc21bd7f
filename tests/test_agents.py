"""Agents: slots and CPUs, losing an agent, reconnecting one, logs and outputs that outlive it, `up` stopping its
agents."""

from __future__ import annotations

import grpc
import pytest
from cluster import alive, descendants
from collector import BackgroundCollector
from programs import SLEEP_60, numbered_lines, python
from task_pids import host_process
from tcp_proxy import TcpProxy
from waiting import eventually

import simplane
from simplane._api.v1 import agent_pb2, agent_pb2_grpc, machine_group_pb2, machine_group_pb2_grpc

RUNNING, QUEUED = simplane.TaskStatus.RUNNING, simplane.TaskStatus.QUEUED
LINES = 150  # one every 20 ms: about 3 s


def machines(cluster) -> list[machine_group_pb2.Machine]:
    stub = cluster.stub(machine_group_pb2_grpc.MachineGroupServiceStub)
    response = stub.ListMachines(
        machine_group_pb2.ListMachinesRequest(machine_group="local"), metadata=cluster.metadata(), timeout=10
    )
    return list(response.machines)


def connected(cluster) -> int:
    return sum(m.state == machine_group_pb2.MACHINE_STATE_CONNECTED for m in machines(cluster))


def statuses(tasks) -> list[simplane.TaskStatus]:
    return [task.info().status for task in tasks]


def test_up_starts_the_requested_agents(cluster_factory) -> None:
    cluster = cluster_factory(agents=2)
    eventually(lambda: connected(cluster) == 2, timeout=20)


def test_an_agent_runs_tasks_up_to_its_slots(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    cluster.start_agent(slots=2)
    client = cluster.client()
    tasks = [client.tasks.submit(SLEEP_60) for _ in range(3)]
    eventually(lambda: statuses(tasks[:2]) == [RUNNING, RUNNING], timeout=30)
    assert tasks[2].info().status == QUEUED
    tasks[0].kill()
    eventually(lambda: tasks[2].info().status == RUNNING, timeout=30)


def test_a_task_takes_the_cpus_it_asks_for(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    cluster.start_agent(slots=2)
    client = cluster.client()
    wide = client.tasks.submit(SLEEP_60, cpus=2)
    eventually(lambda: wide.info().status == RUNNING, timeout=30)
    narrow = client.tasks.submit(SLEEP_60, cpus=1)
    eventually(lambda: narrow.info().status == QUEUED, timeout=10)
    wide.kill()
    eventually(lambda: narrow.info().status == RUNNING, timeout=30)


def test_a_silent_agent_is_lost_with_its_tasks(cluster_factory) -> None:
    # A machine away for 1 s (at least the heartbeat timeout, 1.5 s) is lost: no 10-minute wait here.
    cluster = cluster_factory(agents=0, env={"SIMPLANE_MACHINE_LOST_AFTER": "1"})
    agent = cluster.start_agent()
    task = cluster.client().tasks.submit(SLEEP_60)
    eventually(lambda: task.info().status == RUNNING, timeout=30)
    agent.kill()
    assert task.wait(timeout=15) == simplane.TaskStatus.LOST
    assert "longer than the grace period" in task.info().error
    assert machines(cluster) == []  # a lost machine is forgotten


def test_logs_and_outputs_outlive_the_agent(cluster_factory, tmp_path) -> None:
    cluster = cluster_factory(agents=0)
    agent = cluster.start_agent()
    producer = python("print('\\n'.join(f'line {i}' for i in range(100)))\nopen('result.txt', 'w').write('done')")
    task = cluster.client().tasks.submit(producer)
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    agent.kill()
    assert [line.text for line in task.logs()] == [f"line {i}" for i in range(100)]
    assert any(file.path == "result.txt" for file in task.list_files())
    task.download_outputs(str(tmp_path / "out"))
    assert [path.read_text() for path in (tmp_path / "out").rglob("result.txt")] == ["done"]


def test_a_task_queued_without_agents_runs_when_one_joins(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    task = cluster.client().tasks.submit(numbered_lines(3))
    assert task.info().status == QUEUED
    cluster.start_agent()
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED


def test_sigterm_stops_up_and_its_agents(cluster) -> None:
    eventually(lambda: connected(cluster) == 1, timeout=20)
    children = descendants([cluster.server_pid])
    assert children  # the local agent
    assert cluster.stop() == 0
    eventually(lambda: descendants([cluster.server_pid]) == [] and not any(alive(c) for c in children), timeout=10)


def test_an_agent_cut_off_from_the_server_reconnects_and_loses_no_line(cluster_factory) -> None:
    # The cut below is far shorter than the grace period (10 minutes) a machine has before its tasks are lost.
    cluster = cluster_factory(agents=0, env={"SIMPLANE_HEARTBEAT_INTERVAL": "1"})
    proxy = TcpProxy(cluster.address)
    try:
        cluster.start_agent(server=proxy.address)
        eventually(lambda: connected(cluster) == 1, timeout=20)
        task = cluster.client().tasks.submit(numbered_lines(LINES, every=0.02))
        follower = BackgroundCollector(task.logs(follow=True))  # straight to the server, not through the proxy
        eventually(lambda: len(follower) >= 30, timeout=30)

        proxy.cut()
        eventually(lambda: connected(cluster) == 0, timeout=10)  # the server saw the agent go
        eventually(lambda: proxy.refused >= 3, timeout=10)  # and the agent kept trying, with lines to hold back
        assert len(follower) < LINES, "the task ended before the cut; the test proves nothing"
        proxy.restore()
        eventually(lambda: connected(cluster) == 1, timeout=10)
        assert task.info().status == RUNNING, "the task ended while the agent was away; the test proves less"

        lines = follower.join(timeout=60)
        assert [line.text for line in lines if line.stream == "stdout"] == [f"line {i}" for i in range(LINES)]
        assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
        assert [line.text for line in task.logs()] == [f"line {i}" for i in range(LINES)]  # stored once, too
        assert proxy.connections >= 2
    finally:
        proxy.close()


def test_a_task_lost_while_its_agent_was_cut_off_is_stopped_when_the_agent_returns(cluster_factory) -> None:
    # A 0.3 s heartbeat and a grace period of 1 s: the server gives up on the cut-off agent, and declares its task
    # lost, within seconds.
    cluster = cluster_factory(agents=0, env={"SIMPLANE_HEARTBEAT_INTERVAL": "0.3", "SIMPLANE_MACHINE_LOST_AFTER": "1"})
    proxy = TcpProxy(cluster.address)
    try:
        agent = cluster.start_agent(slots=1, server=proxy.address)
        client = cluster.client()  # straight to the server, not through the proxy
        task = client.tasks.submit(python("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)"))
        pid = int(eventually(lambda: next((line.text for line in task.logs(stream="stdout")), None), timeout=30))
        process = host_process([agent.process.pid], pid)

        proxy.cut()
        assert task.wait(timeout=10) == simplane.TaskStatus.LOST
        assert alive(process), "the task's process ended while the agent was cut off; the test proves nothing"
        proxy.restore()

        eventually(lambda: not alive(process), timeout=10)  # the returning agent was told to drop the task
        assert task.info().status == simplane.TaskStatus.LOST
        # Its slot (the agent's only one) is free again: a new task runs there.
        assert client.tasks.submit(["true"]).wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
        eventually(
            lambda: (
                [(m.state, m.used_slots, m.running_task_ids) for m in client.machine_groups.machines()]
                == [("CONNECTED", 0, [])]
            ),
            timeout=10,
        )
        assert task.info().status == simplane.TaskStatus.LOST
        assert proxy.connections >= 2  # the agent did come back through the proxy
    finally:
        proxy.close()


def test_an_error_on_an_agent_stream_is_logged_once_naming_the_machine(cluster_factory) -> None:
    """A stream the server ends with an error says why in one log line naming the machine: here a first message
    that is no hello, and a later message the edge refuses (read by the stream's reader task)."""
    cluster = cluster_factory(agents=0)
    stub = cluster.stub(agent_pb2_grpc.AgentServiceStub)
    token = cluster.create_agent_token()

    def refused(*messages: agent_pb2.ConnectRequest | None) -> tuple[str, grpc.StatusCode]:
        """Joins a new machine, sends `messages` on its stream (the hello first, if any); the machine and the code."""
        joined = stub.Join(agent_pb2.JoinRequest(machine_group="local"), metadata=cluster.metadata(token), timeout=10)
        hello = agent_pb2.AgentHello(agent_id=joined.machine_id, machine_group="local", hostname="h", slots=1)
        sent = [agent_pb2.ConnectRequest(hello=hello) if m is None else m for m in messages]
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.Connect(iter(sent), metadata=cluster.metadata(joined.credential), timeout=10))
        return joined.machine_id, raised.value.code()

    heartbeat = agent_pb2.ConnectRequest(heartbeat=agent_pb2.AgentHeartbeat())
    no_hello, code = refused(heartbeat)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    bad_report, code = refused(None, agent_pb2.ConnectRequest(task_update=agent_pb2.TaskUpdate(error="a\0b")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    def lines(machine_id: str) -> list[str]:
        return [line for line in cluster.output().splitlines() if machine_id in line]

    eventually(lambda: lines(no_hello) and lines(bad_report), timeout=10)
    assert lines(no_hello) == [
        f"the stream of machine {no_hello} ended: hello: the first message on the stream must be an AgentHello"
    ]
    assert len(lines(bad_report)) == 1 and "task_update.error" in lines(bad_report)[0], lines(bad_report)
    assert "Traceback" not in cluster.output()


def test_stopping_the_server_with_agents_connected_logs_no_error(cluster_factory) -> None:
    """A server stopping ends its agents' streams: that is no agent's error, and its log says nothing of them."""
    cluster = cluster_factory(agents=0)
    agents = [cluster.start_agent(), cluster.start_agent()]
    eventually(lambda: connected(cluster) == 2, timeout=30)
    task = cluster.client().tasks.submit(SLEEP_60)
    eventually(lambda: task.info().status == RUNNING, timeout=30)
    assert cluster.stop() == 0
    server_log = cluster.output().split("--- agent-")[0]
    for said in ("Traceback", "the stream of machine", "failed"):
        assert said not in server_log, server_log
    assert all(agent.process.poll() is None for agent in agents)  # they outlive the server, and wait for it
