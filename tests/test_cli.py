"""The `simplane` command line against a real cluster: run, tasks list/info/tail/kill, admin, errors."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

import pytest
from cluster import CLI, READY_LINE, base_env, run_cli
from programs import numbered_lines, python

import simplane
from simplane._api.v1 import account_pb2, account_pb2_grpc

TASK_ID = re.compile(r"\bt-[0-9a-z]{26}\b")


class LineReader:
    """Reads a long-running process's output lines in a thread, so that a test can wait for one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def until(self, wanted: Callable[[str], bool], timeout: float) -> str:
        """The first line (from here on) for which `wanted` holds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such line within {timeout} s; lines: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the output ended without such a line; lines: {self.seen}")
            self.seen.append(line)
            if wanted(line):
                return line


def stop_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started in its own session, with whatever it started, if it still runs."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def only_error_line(stderr: str) -> str:
    """The CLI reports a failure as exactly one `error:` line on stderr."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].lower().startswith("error:"), stderr
    return lines[0]


def test_help_lists_the_commands_without_importing_the_server() -> None:
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    for command in ("up", "agent", "run", "tasks", "admin"):
        assert command in done.stdout

    probe = (
        "import sys\n"
        "sys.argv = ['simplane', '--help']\n"
        "from simplane.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('sqlalchemy', 'sqlmodel', 'simplane.server', 'google.cloud') if m in sys.modules],"
        " file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=base_env(), capture_output=True, text=True, timeout=30)
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr


def test_run_prints_the_output_and_exits_zero(cluster) -> None:
    done = cluster.run_cli("run", "--", "python", "-c", "print('hello')")
    assert done.returncode == 0, done.stderr
    assert "hello" in done.stdout.splitlines()


def test_run_exits_with_the_tasks_exit_code(cluster) -> None:
    done = cluster.run_cli("run", "--", *python("import sys; print('bye'); sys.exit(3)"))
    assert done.returncode == 3, done.stderr
    assert "bye" in done.stdout.splitlines()


def test_run_detach_prints_the_id(cluster) -> None:
    done = cluster.run_cli("run", "--detach", "--name", "detached", "--project", "cli", "--", "true")
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    assert TASK_ID.fullmatch(task_id), done.stdout
    task = cluster.client().tasks.get(task_id)
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    info = task.info()
    assert (info.name, info.project) == ("detached", "cli")


def test_run_with_inputs(cluster, tmp_path) -> None:
    inputs = tmp_path / "case"
    inputs.mkdir()
    (inputs / "mesh.txt").write_text("cells=64\n")
    done = cluster.run_cli("run", "--inputs", str(inputs), "--", *python("print(open('mesh.txt').read().strip())"))
    assert done.returncode == 0, done.stderr
    assert "cells=64" in done.stdout.splitlines()


def test_tasks_list_json_filters_by_status_and_project(cluster) -> None:
    client = cluster.client()
    good = client.tasks.submit(["true"], project="alpha")
    bad = client.tasks.submit(["false"], project="beta")
    assert good.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert bad.wait(timeout=30) == simplane.TaskStatus.FAILED

    done = cluster.run_cli("tasks", "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {row["id"]: row for row in json.loads(done.stdout)}
    assert set(listed) == {good.id, bad.id}
    assert listed[good.id]["status"] == "SUCCEEDED"
    assert listed[bad.id]["status"] == "FAILED"

    done = cluster.run_cli("tasks", "list", "--json", "--status", "FAILED")
    assert [row["id"] for row in json.loads(done.stdout)] == [bad.id]
    done = cluster.run_cli("tasks", "list", "--json", "--project", "alpha")
    assert [row["id"] for row in json.loads(done.stdout)] == [good.id]
    done = cluster.run_cli("tasks", "list", "--json", "--limit", "1")
    assert [row["id"] for row in json.loads(done.stdout)] == [bad.id]  # newest first


def test_tasks_list_plain_when_piped(cluster) -> None:
    task = cluster.client().tasks.submit(["true"])
    task.wait(timeout=30)
    done = cluster.run_cli("tasks", "list")
    assert done.returncode == 0, done.stderr
    assert task.id in done.stdout
    assert "\x1b[" not in done.stdout  # no colour codes in a pipe


def test_tasks_info_json(cluster) -> None:
    task = cluster.client().tasks.submit(python("import sys; sys.exit(5)"), name="five")
    task.wait(timeout=30)
    done = cluster.run_cli("tasks", "info", task.id, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["id"] == task.id
    assert info["name"] == "five"
    assert info["status"] == "FAILED"
    assert info["exit_code"] == 5


def test_tasks_tail(cluster) -> None:
    task = cluster.client().tasks.submit(
        python("import sys\nfor i in range(10): print(f'out {i}')\nprint('oops', file=sys.stderr)")
    )
    task.wait(timeout=30)

    done = cluster.run_cli("tasks", "tail", task.id, "--stdout")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"out {i}" for i in range(10)]

    done = cluster.run_cli("tasks", "tail", task.id, "--stdout", "-n", "3")
    assert done.stdout.splitlines() == ["out 7", "out 8", "out 9"]

    # The task's stderr goes to the CLI's stderr, so a pipe reading stdout sees only the task's stdout.
    done = cluster.run_cli("tasks", "tail", task.id, "--stderr")
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "oops\n")
    done = cluster.run_cli("tasks", "tail", task.id)
    assert done.stdout.splitlines() == [f"out {i}" for i in range(10)]
    assert done.stderr.splitlines() == ["oops"]


def test_tasks_tail_of_zero_lines_is_a_usage_error(cluster) -> None:
    task = cluster.client().tasks.submit(numbered_lines(3))
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    for lines in ("-n", "0"), ("--lines", "0"), ("-n", "-1"):
        done = cluster.run_cli("tasks", "tail", task.id, *lines)
        assert done.returncode == 2, (lines, done.stdout, done.stderr)
        assert done.stdout == ""
        assert "--lines" in done.stderr, done.stderr
    done = cluster.run_cli("tasks", "tail", task.id, "-n", "1")
    assert (done.returncode, done.stdout) == (0, "line 2\n"), done.stderr


def test_tasks_tail_follow_ends_with_the_task(cluster) -> None:
    task = cluster.client().tasks.submit(numbered_lines(50, every=0.01))
    done = cluster.run_cli("tasks", "tail", task.id, "-f", "--stdout")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"line {i}" for i in range(50)]


def test_tasks_kill(cluster) -> None:
    task = cluster.client().tasks.submit(["sleep", "60"])
    done = cluster.run_cli("tasks", "kill", task.id)
    assert done.returncode == 0, done.stderr
    assert task.wait(timeout=20) == simplane.TaskStatus.KILLED


def test_tasks_kill_unknown_is_one_error_line(cluster) -> None:
    done = cluster.run_cli("tasks", "kill", "t-00000000000000000000000000")
    assert done.returncode == 1
    assert "t-00000000000000000000000000" in only_error_line(done.stderr)


def test_tasks_info_unknown_is_one_error_line(cluster) -> None:
    done = cluster.run_cli("tasks", "info", "t-00000000000000000000000000", "--json")
    assert done.returncode == 1
    assert done.stdout == ""
    only_error_line(done.stderr)


def test_tasks_files_and_download(cluster, tmp_path) -> None:
    task = cluster.client().tasks.submit(python("open('result.txt', 'w').write('42\\n')"))
    task.wait(timeout=30)
    done = cluster.run_cli("tasks", "files", task.id)
    assert done.returncode == 0, done.stderr
    assert "result.txt" in done.stdout

    target = tmp_path / "downloaded"
    done = cluster.run_cli("tasks", "download", task.id, "--dir", str(target))
    assert done.returncode == 0, done.stderr
    assert [path.read_text() for path in target.rglob("result.txt")] == ["42\n"]


def test_admin_users_create_prints_a_working_key(cluster) -> None:
    done = cluster.run_cli("admin", "users", "create", "bob")
    assert done.returncode == 0, done.stderr
    key = re.search(r"\bsp_[0-9a-f]{12}_\S{32}\b", done.stdout)
    assert key, done.stdout
    stub = account_pb2_grpc.AccountServiceStub(cluster.channel())
    me = stub.WhoAmI(account_pb2.WhoAmIRequest(), metadata=cluster.metadata(key.group(0)), timeout=10)
    assert (me.user.name, me.user.admin) == ("bob", False)


def test_admin_agent_token_joins_an_agent(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)
    done = cluster.run_cli("admin", "agent-token")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert re.fullmatch(r"sp_[0-9a-f]{12}_\S{32}", token), done.stdout
    cluster.start_agent(token=token)
    task = cluster.client().tasks.submit(["true"])
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED


def test_wrong_key_is_one_error_line(cluster) -> None:
    env = {**cluster.env, "SIMPLANE_API_KEY": "sp_000000000000_" + "x" * 32}
    done = run_cli("tasks", "list", env=env)
    assert done.returncode == 1
    only_error_line(done.stderr)


def test_unreachable_server_is_one_error_line(cluster) -> None:
    env = {**cluster.env, "SIMPLANE_ADDRESS": "127.0.0.1:1"}
    done = run_cli("tasks", "list", env=env, timeout=60)
    assert done.returncode == 1
    only_error_line(done.stderr)


def test_help_of_tasks_list_and_of_the_program_name_their_options() -> None:
    done = run_cli("tasks", "list", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--status", "--project", "--machine-group", "--limit", "--json", "--help"):
        assert option in done.stdout, option
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--version", "--help"):
        assert option in done.stdout, option


def failed_up(tmp_path, *args: str) -> tuple[subprocess.Popen, str]:
    """Runs `simplane up ARGS` until it exits, which it must do with code 1 and one error line; returns both."""
    env = {**base_env(), "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    up = subprocess.Popen(
        [*CLI, "up", *args],
        env=env,
        cwd=tmp_path,
        text=True,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = up.communicate(timeout=30)
    finally:
        stop_group(up)
    assert up.returncode == 1, (stdout, stderr)
    assert not READY_LINE.search(stdout), stdout
    return up, only_error_line(stderr)


def test_up_refuses_a_public_address_without_auth(tmp_path) -> None:
    _, line = failed_up(tmp_path, "--address", "0.0.0.0:0", "--http-address", "127.0.0.1:0", "--disable-auth")
    assert "0.0.0.0:0" in line and "auth" in line, line


@pytest.mark.parametrize("flag", ["--address", "--http-address"])
def test_up_on_a_port_in_use_is_one_error_line_and_leaves_no_agent_behind(tmp_path, flag) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        addresses = {"--address": "127.0.0.1:0", "--http-address": "127.0.0.1:0", flag: busy}
        up, line = failed_up(tmp_path, *(part for pair in addresses.items() for part in pair), "--agents", "2")
    assert f"cannot listen on {busy}" in line, line
    with pytest.raises(ProcessLookupError):  # the agents it had started are gone with it
        os.killpg(up.pid, 0)


def test_tasks_watch_piped_prints_plain_lines_until_interrupted(cluster) -> None:
    watch = subprocess.Popen(
        [*CLI, "tasks", "watch"],
        env=cluster.env,
        cwd=cluster.root,
        text=True,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert watch.stdout is not None and watch.stderr is not None  # both piped
    try:
        lines = LineReader(watch.stdout)
        task = cluster.client().tasks.submit(["true"])
        assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
        ended = lines.until(lambda line: task.id in line and "SUCCEEDED" in line, timeout=15)
        assert "\x1b[" not in ended
        watch.send_signal(signal.SIGINT)  # Ctrl-C, the way a watch is meant to end
        assert watch.wait(timeout=5) == 0
        assert "Traceback" not in watch.stderr.read()
    finally:
        stop_group(watch)
