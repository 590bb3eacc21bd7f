"""The session's Slurm cluster (tests/slurm.py) and the Slurm behaviour a provider that runs agents as batch jobs
relies on: a job runs and writes its output, its state reads machine-readably, scancel ends it and its processes,
an impossible request is refused at sbatch, and a job reaches a socket on 127.0.0.1."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from pathlib import Path

import pytest
from slurm import CPUS, MEMORY_MB, NODE, SlurmCluster
from waiting import eventually

JOB_TIMEOUT = 30


def sbatch(slurm: SlurmCluster, *args: str) -> str:
    """Submits a batch job; returns its id."""
    done = slurm.run("sbatch", "--parsable", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def job_states(slurm: SlurmCluster, *job_ids: str) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} from squeue, finished jobs included (`squeue --json` would ignore the filters)."""
    done = slurm.run("squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r")
    assert done.returncode == 0, done.stderr
    rows = [line.split("|") for line in done.stdout.splitlines()]
    return {job_id: (state, reason) for job_id, state, reason in rows}


def wait_for_state(slurm: SlurmCluster, job_id: str, state: str) -> tuple[str, str]:
    def reached() -> tuple[str, str]:
        seen = job_states(slurm, job_id)[job_id]
        assert seen[0] == state, seen
        return seen

    return eventually(reached, timeout=JOB_TIMEOUT, interval=0.05)


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (state first, start time at index 19); [] once the pid is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def start_time(pid: int) -> int:
    return int(stat_fields(pid)[19])


def runs(pid: int, started: int) -> bool:
    """Whether the process runs: a zombie has ended, and a recycled pid has another start time."""
    fields = stat_fields(pid)
    return bool(fields) and fields[0] != "Z" and int(fields[19]) == started


def submit_shell_and_child(slurm: SlurmCluster, pids: Path) -> tuple[str, list[int]]:
    """A job whose shell waits for a child, as an agent for its task: the job's id, the shell's and child's pids."""
    script = f"sleep 300 & echo $$ $! > {pids}.new; mv {pids}.new {pids}; wait"
    job_id = sbatch(slurm, "--output=/dev/null", "--wrap", script)
    return job_id, eventually(
        lambda: [int(pid) for pid in pids.read_text().split()] if pids.exists() else [], timeout=JOB_TIMEOUT
    )


def test_a_batch_job_runs_and_writes_its_output(slurm: SlurmCluster, tmp_path: Path) -> None:
    job_id = sbatch(slurm, f"--output={tmp_path}/job-%j.out", "--wrap", 'echo "job $SLURM_JOB_ID on $SLURMD_NODENAME"')
    assert wait_for_state(slurm, job_id, "COMPLETED") == ("COMPLETED", "None")
    assert (tmp_path / f"job-{job_id}.out").read_text() == f"job {job_id} on {NODE}\n"


def test_job_states_read_while_running_and_after_the_end(slurm: SlurmCluster, tmp_path: Path) -> None:
    """The states a provider tells apart, several jobs in one squeue call: running, completed, failed by its exit
    code."""
    go = tmp_path / "go"
    waiting = sbatch(slurm, "--output=/dev/null", "--wrap", f"while [ ! -e {go} ]; do sleep 0.05; done")
    failing = sbatch(slurm, "--output=/dev/null", "--wrap", "exit 3")
    wait_for_state(slurm, failing, "FAILED")
    wait_for_state(slurm, waiting, "RUNNING")
    assert job_states(slurm, waiting, failing) == {
        waiting: ("RUNNING", "None"),
        failing: ("FAILED", "NonZeroExitCode"),
    }
    go.touch()
    wait_for_state(slurm, waiting, "COMPLETED")


def test_scancel_ends_a_running_job_and_its_processes(slurm: SlurmCluster, tmp_path: Path) -> None:
    job_id, job = submit_shell_and_child(slurm, tmp_path / "pids")
    processes = [(pid, start_time(pid)) for pid in job]
    wait_for_state(slurm, job_id, "RUNNING")

    done = slurm.run("scancel", job_id)
    assert done.returncode == 0, done.stderr
    wait_for_state(slurm, job_id, "CANCELLED")
    eventually(lambda: not any(runs(*process) for process in processes), timeout=JOB_TIMEOUT)


@pytest.mark.parametrize(
    ("request_args", "refusal"),
    [
        ([f"--cpus-per-task={CPUS + 1}"], "More processors requested than permitted"),
        ([f"--mem={MEMORY_MB + 1}"], "Requested node configuration is not available"),
        (["--partition=nowhere"], "Invalid partition name specified"),
    ],
    ids=["cpus", "memory", "partition"],
)
def test_an_impossible_request_is_refused_at_sbatch(slurm: SlurmCluster, request_args: list[str], refusal: str) -> None:
    done = slurm.run("sbatch", "--parsable", *request_args, "--output=/dev/null", "--wrap", "true")
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"Batch job submission failed: {refusal}" in done.stderr


def test_a_job_runs_as_the_tests_user_and_reaches_a_socket_on_localhost(slurm: SlurmCluster) -> None:
    """Agents run as jobs dial the server on the submitting host; here, 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(JOB_TIMEOUT)
        port = server.getsockname()[1]
        dial = f"import os, socket; socket.create_connection(('127.0.0.1', {port})).sendall(b'uid %d' % os.getuid())"
        job_id = sbatch(slurm, "--output=/dev/null", "--wrap", shlex.join([sys.executable, "-c", dial]))
        connection, _ = server.accept()
        with connection:
            connection.settimeout(JOB_TIMEOUT)
            received = b""
            while chunk := connection.recv(64):
                received += chunk
    assert received == f"uid {os.getuid()}".encode()
    wait_for_state(slurm, job_id, "COMPLETED")


@pytest.mark.parametrize("controller", ["running", "killed"])
def test_stop_leaves_no_process_behind(slurm: SlurmCluster, tmp_path: Path, controller: str) -> None:
    """A second cluster beside the session's, stopped while a job runs on each: the second's daemons, its job's
    slurmstepd and the job's processes all end, and its directory is removed, also when its slurmctld died first
    and cannot scancel; the session's cluster and its job are untouched."""
    neighbour_id, neighbour = submit_shell_and_child(slurm, tmp_path / "neighbour-pids")
    neighbour_processes = [(pid, start_time(pid)) for pid in neighbour]
    second = SlurmCluster().start()
    try:
        _, job = submit_shell_and_child(second, tmp_path / "pids")
        steps = second.job_steps()
        assert len(steps) == 1
        processes = [*steps, *[(pid, start_time(pid)) for pid in [*second.daemon_pids.values(), *job]]]
        assert all(runs(*process) for process in processes)
        if controller == "killed":
            second.kill("slurmctld")
    finally:
        second.stop()
    assert [process for process in processes if runs(*process)] == []
    assert not second.root.exists()

    assert all(runs(*process) for process in neighbour_processes)
    assert job_states(slurm, neighbour_id)[neighbour_id] == ("RUNNING", "None")
    assert slurm.run("scancel", neighbour_id).returncode == 0
