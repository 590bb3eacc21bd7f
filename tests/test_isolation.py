"""Tasks cannot read what is not theirs: a clean environment, the server's data dir, its config and other tasks'
directories out of reach (with bubblewrap), and the data dir's files private to the server's user."""

from __future__ import annotations

import json
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest
from programs import python
from waiting import eventually

import simplane
from simplane.agent.sandbox import SYSTEM_PATH, find_bwrap

MARKER = "SIMPLANE_SECRET_MARKER"
needs_bwrap = pytest.mark.skipif(find_bwrap() is None, reason="bubblewrap is not usable here (CI installs it)")

# Prints, for each path given, what reading it gave: its first bytes, or the error's name.
READ_EACH = python(
    "import json, sys\n"
    "seen = {}\n"
    "for path in sys.argv[1:]:\n"
    "    try:\n"
    "        with open(path, 'rb') as f:\n"
    "            seen[path] = f.read(64).decode(errors='replace')\n"
    "    except OSError as err:\n"
    "        seen[path] = type(err).__name__\n"
    "print(json.dumps(seen))\n"
)


def printed_json(task) -> dict:
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED, task.info().error
    return json.loads("".join(line.text for line in task.logs(stream="stdout")))


def test_a_task_sees_only_its_own_environment(cluster_factory) -> None:
    cluster = cluster_factory(env={MARKER: "do-not-leak"})
    task = cluster.client().tasks.submit(
        python("import json, os; print(json.dumps(dict(os.environ)))"), env={"CASE": "c1"}
    )
    env = printed_json(task)

    home = env["HOME"]
    assert env == {
        "PATH": f"{Path(sys.executable).parent}:{SYSTEM_PATH}",
        "HOME": home,
        "PWD": str(Path(home).parent / "work"),
        "TMPDIR": str(Path(home).parent / "tmp"),
        "LANG": "C.UTF-8",
        "USER": pwd.getpwuid(os.geteuid()).pw_name,
        "LOGNAME": pwd.getpwuid(os.geteuid()).pw_name,
        "SIMPLANE_TASK_ID": task.id,
        "SIMPLANE_TASK_ATTEMPT": "1",
        "CASE": "c1",
    }
    assert task.id in home and home != os.environ.get("HOME")
    # Its home is its own and writable, and not part of its outputs.
    writer = cluster.client().tasks.submit(python("import os; open(os.path.expanduser('~/.rc'), 'w').write('x')"))
    assert writer.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED, writer.info().error
    assert writer.list_files() == []


@needs_bwrap
def test_a_task_cannot_read_the_servers_files_or_keys(cluster) -> None:
    data = cluster.data_dir
    secrets = [
        data / "agent-token",
        data / "simplane.db",
        cluster.config_dir / "simplane" / "config.toml",
        Path(f"/proc/{cluster.server_pid}/environ"),
    ]
    assert (data / "agent-token").read_text().strip()  # they exist, for the server's user
    assert "api_key" in secrets[2].read_text()
    seen = printed_json(cluster.client().tasks.submit([*READ_EACH, *map(str, secrets)]))
    assert seen == {str(path): "FileNotFoundError" for path in secrets}


@needs_bwrap
def test_a_task_cannot_read_another_tasks_directory(cluster) -> None:
    client = cluster.client()
    holder = client.tasks.submit(
        python(
            "import os, time\n"
            "open('secret.txt', 'w').write('mine alone')\n"
            "print(os.path.abspath('secret.txt'), flush=True)\n"
            "time.sleep(60)\n"
        )
    )
    secret = eventually(lambda: next((line.text for line in holder.logs(stream="stdout")), None), timeout=30)
    assert Path(secret).read_text() == "mine alone"  # where the agent keeps it, on the host
    agent_tasks = str(Path(secret).parents[2])
    seen = printed_json(client.tasks.submit([*READ_EACH, secret]))
    assert seen == {secret: "FileNotFoundError"}
    listing = printed_json(
        client.tasks.submit(python(f"import json, os; print(json.dumps(os.listdir({agent_tasks!r})))"))
    )
    assert len(listing) == 1  # its own directory only, not the holder's
    holder.kill()
    assert holder.wait(timeout=30) == simplane.TaskStatus.KILLED


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_is_private_to_the_servers_user(cluster, tmp_path) -> None:
    source = tmp_path / "case"
    source.mkdir()
    (source / "mesh.txt").write_text("mesh\n")
    (source / "mesh.txt").chmod(0o644)
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    client = cluster.client()
    task = client.tasks.submit(["sh", "-c", "echo out; cat mesh.txt > result.txt"], inputs=str(source))
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED, task.info().error

    data = cluster.data_dir
    assert mode(data) == 0o700
    assert mode(data / "agents" / "0") == 0o700
    stored = [path for path in (data / "files").rglob("*") if path.is_file()]
    assert {path.name for path in stored} == {"mesh.txt", "run.sh", "result.txt"}
    private = [path for path in data.iterdir() if path.name != "agents"]  # the agents' dirs are checked above
    private += [path for top in private if top.is_dir() for path in top.rglob("*")]
    assert any(path.name.startswith("simplane.db") for path in private) == (cluster.database_url is None)
    assert {str(path): oct(mode(path) & 0o077) for path in private if mode(path) & 0o077} == {}
    assert all(mode(path) == 0o600 for path in stored)
    # The uploaded modes are kept for downloads.
    inputs = next(file.path for file in client.storage.list() if file.path.endswith("/mesh.txt"))
    client.storage.download(inputs.removesuffix("mesh.txt"), str(tmp_path / "back"))
    assert (mode(tmp_path / "back" / "mesh.txt"), mode(tmp_path / "back" / "run.sh")) == (0o644, 0o755)


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0, reason="only a root agent runs tasks as another user")
def test_a_root_agent_runs_tasks_as_the_task_user(cluster_factory, tmp_path) -> None:
    cluster = cluster_factory(env={"SIMPLANE_TASK_USER": "nobody"})
    script = (
        "id -u\n"
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status\n"
        "echo made > out.txt\n"
        "if cat /etc/shadow > /dev/null 2>&1; then echo shadow-read; else echo shadow-refused; fi\n"
        'touch "$HOME/x" "$TMPDIR/x" && echo own-dirs-writable\n'
    )
    task = cluster.client().tasks.submit(["sh", "-c", script])
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED, [line.text for line in task.logs()]
    assert [line.text for line in task.logs()] == [
        str(pwd.getpwnam("nobody").pw_uid),
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "shadow-refused",
        "own-dirs-writable",
    ]
    task.download_outputs(tmp_path / "outputs")
    assert (tmp_path / "outputs" / "out.txt").read_text() == "made\n"
