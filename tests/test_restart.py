"""Durability: the server dies and comes back on the same data dir and port; nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from collector import BackgroundCollector
from programs import numbered_lines
from tcp_proxy import TcpProxy
from waiting import eventually
from watch_stream import CHANGE, SNAPSHOT, changes, ended, open_watch, snapshot_end, take_until

import simplane
from simplane._api.v1 import task_pb2

LINES = 200  # one every 20 ms: about 4 s


def test_sigkill_the_server_while_an_agent_runs_a_followed_task(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    cluster.start_agent()
    client = cluster.client()
    task = client.tasks.submit(numbered_lines(LINES, every=0.02))
    follower = BackgroundCollector(task.logs(follow=True))
    watcher = BackgroundCollector(task.watch())
    eventually(lambda: len(follower) >= 30, timeout=30)
    revision_before = task.info().revision

    cluster.kill()
    assert len(follower) < LINES, "the task ended before the server was killed; the test proves nothing"
    cluster.restart()

    lines = follower.join(timeout=60)
    assert [line.text for line in lines if line.stream == "stdout"] == [f"line {i}" for i in range(LINES)]
    offsets = [line.offset for line in lines]
    assert offsets == sorted(set(offsets))
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED

    seen = watcher.join(timeout=30)
    assert seen[-1].status == simplane.TaskStatus.SUCCEEDED
    revisions = [info.revision for info in seen]
    assert revisions == sorted(set(revisions))

    # The changes after the crash can be replayed from a revision taken before it.
    call, events = open_watch(cluster, task_ids=[task.id], since_revision=revision_before)
    replayed = changes(take_until(events, ended(task.id)))
    call.cancel()
    assert all(revision > revision_before for revision, _, _ in replayed)
    assert replayed[-1][1:] == (task.id, task_pb2.TASK_STATUS_SUCCEEDED)


def test_the_asyncio_client_follows_and_waits_through_a_server_killed_mid_task(cluster_factory) -> None:
    """AsyncClient's own reconnect code (tests/test_client.py holds both clients to one surface; this holds its
    resumes to the same promise as the blocking client's above): every line once, in order, and the end."""
    cluster = cluster_factory(agents=0)
    cluster.start_agent()

    async def follow_through_a_restart() -> tuple[list[simplane.LogLine], simplane.TaskStatus]:
        async with simplane.AsyncClient(address=cluster.address, api_key=cluster.api_key) as client:
            task = await client.tasks.submit(numbered_lines(LINES, every=0.02))
            lines: list[simplane.LogLine] = []
            async for line in task.logs(follow=True):
                lines.append(line)
                if len(lines) == 30:  # of 200 lines written over 4 s: the stream is cut mid-task
                    await asyncio.to_thread(cluster.kill)
                    await asyncio.to_thread(cluster.restart)
            return lines, await task.wait(timeout=30)

    # On a thread of its own: a console test may leave an event loop running on the main thread.
    with ThreadPoolExecutor(1) as thread:
        lines, status = thread.submit(asyncio.run, follow_through_a_restart()).result(timeout=120)
    assert [line.text for line in lines if line.stream == "stdout"] == [f"line {i}" for i in range(LINES)]
    offsets = [line.offset for line in lines]
    assert offsets == sorted(set(offsets))
    assert status == simplane.TaskStatus.SUCCEEDED


def test_an_agent_back_late_after_a_restart_keeps_its_task(cluster_factory) -> None:
    # A restarted server gives each machine that had tasks the whole grace period (10 minutes) to come back, not
    # just the heartbeat timeout (three 0.3 s heartbeats): the restart finds every agent backing off.
    cluster = cluster_factory(agents=0, env={"SIMPLANE_HEARTBEAT_INTERVAL": "0.3"})
    proxy = TcpProxy(cluster.address)
    try:
        cluster.start_agent(server=proxy.address)
        task = cluster.client().tasks.submit(numbered_lines(LINES, every=0.02))
        follower = BackgroundCollector(task.logs(follow=True))  # straight to the server, not through the proxy
        eventually(lambda: len(follower) >= 30, timeout=30)

        proxy.cut()
        cluster.kill()
        cluster.restart()
        restarted, refused = time.monotonic(), proxy.refused
        eventually(lambda: proxy.refused >= refused + 4, timeout=20)  # the agent kept trying to come back
        assert time.monotonic() - restarted > 3 * 0.3, "the agent was not kept away long; the test proves nothing"
        assert task.info().status == simplane.TaskStatus.RUNNING
        proxy.restore()

        lines = follower.join(timeout=60)
        assert [line.text for line in lines if line.stream == "stdout"] == [f"line {i}" for i in range(LINES)]
        assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    finally:
        proxy.close()


def test_status_events_and_revisions_survive_a_restart(cluster) -> None:
    client = cluster.client()
    task = client.tasks.submit(numbered_lines(10))
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    before = task.info()

    call, events = open_watch(cluster, since_revision=1)
    history_before = changes(take_until(events, ended(task.id)))
    call.cancel()
    call, events = open_watch(cluster)
    snapshot_before = take_until(events, snapshot_end)
    call.cancel()

    assert cluster.stop() == 0
    cluster.restart()

    after = task.info()
    assert (after.status, after.revision, after.exit_code) == (before.status, before.revision, before.exit_code)
    assert [(e.status, e.time) for e in after.history] == [(e.status, e.time) for e in before.history]
    assert [line.text for line in task.logs()] == [f"line {i}" for i in range(10)]

    call, events = open_watch(cluster, since_revision=1)
    assert changes(take_until(events, ended(task.id))) == history_before
    call.cancel()
    call, events = open_watch(cluster)
    snapshot_after = take_until(events, snapshot_end)
    call.cancel()
    assert [(e.type, e.revision, e.task.id) for e in snapshot_after] == [
        (e.type, e.revision, e.task.id) for e in snapshot_before
    ]
    assert snapshot_after[0].type == SNAPSHOT

    # New changes continue after the old revisions.
    newer = client.tasks.submit(["true"])
    call, events = open_watch(cluster, since_revision=snapshot_before[-1].revision)
    following = [e for e in take_until(events, ended(newer.id)) if e.type == CHANGE]
    call.cancel()
    assert following[0].task.id == newer.id
    assert following[0].revision > snapshot_before[-1].revision
