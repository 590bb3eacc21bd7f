"""The init process of a fake GCE instance's machine (tests/fake_gce.py).

`python fake_gce_machine.py COMMAND...` runs COMMAND (the instance's startup script) and adopts, as a child
subreaper, every process the script leaves behind, even one that started a session of its own (an agent's task
does): all of the machine's processes stay its descendants, so the fake can signal them all, as a VM's shutdown
reaches every process on it. Like a VM, the machine stays up when the script ends. It stops when its standard
input closes (the fake deletes the instance, or the fake itself dies): it kills every descendant, then exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

from cluster import alive, descendants

PR_SET_CHILD_SUBREAPER = 36
KILL_DEADLINE = 10.0


def kill_descendants(root: int) -> None:
    """SIGKILL every descendant of `root` until none is left (one may fork while the others die)."""
    deadline = time.monotonic() + KILL_DEADLINE
    while remaining := descendants([root]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of the machine survive SIGKILL: {remaining}")
        for process in remaining:
            if alive(process):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process[0], signal.SIGKILL)
        time.sleep(0.01)  # the reaper thread collects the dead before the next look


def _reap(script: int) -> None:
    """Wait for every child, adopted ones included; log the script's exit as the guest agent does."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return  # nothing runs on the machine, and nothing can start again
        if pid == script:
            print(f"startup-script exit status {os.waitstatus_to_exitcode(status)}", flush=True)


def main(command: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    # A preemption signals the machine's processes; its init outlives them to reap them.
    signal.signal(signal.SIGTERM, lambda number, frame: None)
    # Not the lifeline as its standard input: the script reads nothing from the fake.
    script = os.posix_spawn(
        command[0], command, os.environ, file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    )
    threading.Thread(target=_reap, args=(script,), daemon=True).start()
    sys.stdin.buffer.read()  # the lifeline: returns when the fake closes it or dies
    kill_descendants(os.getpid())


if __name__ == "__main__":
    main(sys.argv[1:])
