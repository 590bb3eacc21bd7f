"""A task's process as the host sees it: in a bubblewrap sandbox a task has a pid namespace of its own, so the pid
it prints is not the pid the test can signal or watch."""

from __future__ import annotations

from pathlib import Path

from cluster import descendants


def host_process(roots: list[int], task_pid: int) -> tuple[int, int]:
    """(pid, start time), as `cluster.descendants` gives them, of the descendant of `roots` that calls itself
    `task_pid` in its own pid namespace (NSpid's last field; without a sandbox, its pid)."""
    for process in descendants(roots):
        try:
            status = Path(f"/proc/{process[0]}/status").read_text()
        except OSError:
            continue
        nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        if int(nspid[-1]) == task_pid:
            return process
    raise AssertionError(f"no process of the task with pid {task_pid} in its namespace")
