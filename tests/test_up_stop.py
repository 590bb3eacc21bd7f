"""Stopping `simplane up` ends its local agents' running tasks as KILLED, "server stopped", with their output and
outputs kept; queued tasks stay queued and run after the next start."""

from __future__ import annotations

from programs import python
from waiting import eventually

import simplane

# Writes a file, prints three lines, then waits to be stopped.
WRITER = python(
    "import time\n"
    "open('partial.txt', 'w').write('half done\\n')\n"
    "for i in range(3):\n"
    "    print(f'line {i}', flush=True)\n"
    "time.sleep(60)\n"
)


def test_stopping_up_kills_its_running_tasks_and_keeps_their_outputs(cluster, tmp_path) -> None:
    client = cluster.client()
    running = client.tasks.submit(WRITER)
    eventually(lambda: len([line for line in running.logs(stream="stdout")]) == 3, timeout=30)
    # Asks for more CPUs than the machine has: it runs only on an idle machine, so it waits behind the writer.
    queued = client.tasks.submit(["true"], cpus=1000)
    assert queued.info().status == simplane.TaskStatus.QUEUED

    assert cluster.stop() == 0
    cluster.restart()

    info = running.info()
    assert (info.status, info.error) == (simplane.TaskStatus.KILLED, "server stopped")
    assert [line.text for line in running.logs(stream="stdout")] == ["line 0", "line 1", "line 2"]
    running.download_outputs(tmp_path / "outputs")
    assert (tmp_path / "outputs" / "partial.txt").read_text() == "half done\n"
    # The queued task was kept, and runs once the new agent is up.
    assert queued.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert simplane.TaskStatus.KILLED not in [entry.status for entry in queued.info().history]
