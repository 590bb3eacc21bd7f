"""What the CLI sends to a terminal: task output with only colours passed, user text never read as markup, and
byte-exact output into pipes."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

from cluster import CLI
from programs import python

import simplane

# Sequences a task could use against the terminal of whoever follows it.
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
CLIPBOARD = "\x1b]52;c;ZWNobyBoaQ==\x07"
LINK = "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
RED = "\x1b[31mred\x1b[0m"
HOSTILE_LINE = f"{TITLE}{CLEAR}{CLIPBOARD}{LINK} {RED}\tend"


def run_on_terminal(cluster, *args: str, timeout: float = 60) -> tuple[int, bytes]:
    """`simplane ARGS` with stdout and stderr on a pseudo-terminal; its exit code and everything it showed."""
    controller, terminal = pty.openpty()
    env = {**cluster.env, "COLUMNS": "200", "TERM": "xterm-256color"}
    process = subprocess.Popen(
        [*CLI, *args], env=env, cwd=cluster.root, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            shown += data
        return process.wait(timeout=max(1.0, deadline - time.monotonic())), bytes(shown)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tail_on_a_terminal_passes_colours_and_shows_other_sequences_as_text(cluster) -> None:
    task = cluster.client().tasks.submit(python(f"print({HOSTILE_LINE!r})"))
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED

    code, shown = run_on_terminal(cluster, "tasks", "tail", task.id)
    assert code == 0, shown
    assert RED.encode() in shown  # colours pass
    for sequence in (TITLE, CLEAR, CLIPBOARD, LINK):
        assert sequence.encode() not in shown
    assert b"\\x1b]0;pwned\\x07" in shown  # shown as text instead
    assert b"\\x1b[2J" in shown
    escapes = shown.replace(b"\x1b[31m", b"").replace(b"\x1b[0m", b"")
    assert b"\x1b" not in escapes and b"\x07" not in escapes, shown

    code, shown = run_on_terminal(cluster, "tasks", "tail", task.id, "--raw")
    assert code == 0, shown
    assert HOSTILE_LINE.encode() in shown


def test_tail_into_a_pipe_is_byte_exact(cluster) -> None:
    written = (HOSTILE_LINE + "\n").encode() + b"\xff\xfe not utf-8\r\nno final newline"
    task = cluster.client().tasks.submit(python(f"import sys\nsys.stdout.buffer.write({written!r})"))
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED

    done = subprocess.run(
        [*CLI, "tasks", "tail", task.id], env=cluster.env, cwd=cluster.root, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == written


def test_names_are_shown_literally_in_tables_and_views(cluster) -> None:
    client = cluster.client()
    markup = "[link=http://evil.example/]free[/link] [bold red]x[/]"
    task = client.tasks.submit(python("pass"), name=markup, project=f"p{TITLE}")
    task.wait(timeout=30)

    for args in (("tasks", "list"), ("tasks", "info", task.id)):
        code, shown = run_on_terminal(cluster, *args)
        assert code == 0, shown
        assert markup.encode() in shown, shown  # the brackets are text, not markup
        assert b"\x1b]8;" not in shown  # no hyperlink was made
        assert TITLE.encode() not in shown
        assert b"p\\x1b]0;pwned\\x07" in shown


def test_tail_follow_exits_with_the_tasks_exit_code(cluster) -> None:
    task = cluster.client().tasks.submit(python("import sys, time\nprint('working', flush=True)\nsys.exit(3)"))
    done = cluster.run_cli("tasks", "tail", task.id, "-f")
    assert (done.returncode, done.stdout) == (3, "working\n"), done.stderr

    task = cluster.client().tasks.submit(python("print('fine')"))
    done = cluster.run_cli("tasks", "tail", task.id, "-f")
    assert (done.returncode, done.stdout) == (0, "fine\n"), done.stderr
