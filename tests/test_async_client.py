"""simplane.AsyncClient end to end: the same shape as the blocking client, driven by asyncio."""

from __future__ import annotations

import asyncio

from programs import python

import simplane

PRODUCER = python(
    "import sys\nfor i in range(500):\n    print(f'out {i}')\n    print(f'err {i}', file=sys.stderr)\nsys.exit(3)"
)


def test_submit_follow_wait_and_info(cluster) -> None:
    async def scenario() -> None:
        async with (
            asyncio.timeout(60),
            simplane.AsyncClient(address=cluster.address, api_key=cluster.api_key) as client,
        ):
            task = await client.tasks.submit(PRODUCER, name="async", project="aio")
            lines = [line async for line in task.logs(follow=True)]
            assert [line.text for line in lines if line.stream == "stdout"] == [f"out {i}" for i in range(500)]
            assert [line.text for line in lines if line.stream == "stderr"] == [f"err {i}" for i in range(500)]
            assert await task.wait(timeout=30) == simplane.TaskStatus.FAILED
            info = await task.info()
            assert (info.id, info.name, info.project) == (task.id, "async", "aio")
            assert (info.status, info.exit_code) == (simplane.TaskStatus.FAILED, 3)
            assert [entry.status for entry in info.history][-1] == simplane.TaskStatus.FAILED

            again = await client.tasks.get(task.id)
            assert [line.text async for line in again.logs(stream="stdout", lines=2)] == ["out 498", "out 499"]
            assert task.id in [listed.id async for listed in client.tasks.list(project="aio")]

    asyncio.run(scenario())
