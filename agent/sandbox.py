"""What a task's process may see: a clean environment always, and with bubblewrap a read-only view of the
machine in which the agent's files, the paths it was told to hide and other tasks are out of reach.

docs/isolation.md says what each setup isolates and what it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Every task starts from this PATH: the directory of the Python that runs simplane (so `python` is that
# interpreter), then the usual system directories. Never the PATH of the shell that started the agent.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Files a task creates are readable by others, as in a login shell; its directories are not (0700).
TASK_UMASK = 0o022
# A view of the machine every sandbox starts from, and the namespaces and limits it adds (see TaskProcess).
BASE_VIEW = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")
CONFINEMENT = ("--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session", "--cap-drop", "ALL")
# How long a kill in a sandbox's first moments waits for bwrap to say where the sandbox is.
INFO_WAIT = 0.5
# In what bubblewrap writes to --info-fd: the pid, outside the sandbox, of the sandbox's first process.
CHILD_PID = re.compile(rb'"child-pid"\s*:\s*(\d+)')


def task_path() -> str:
    return f"{Path(sys.executable).parent}:{SYSTEM_PATH}"


def find_bwrap() -> str | None:
    """bubblewrap's path if it can build a sandbox here (it is installed and user namespaces, or root, allow
    it), else None. Costs one sandboxed `true`, a few milliseconds."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    try:
        probe = subprocess.run(
            [bwrap, *BASE_VIEW, *CONFINEMENT, "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bwrap if probe.returncode == 0 else None


def user_name() -> str:
    """The name of the user this process runs as (from the user database, not from $USER)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def unsandboxed_warning() -> str:
    """The one line said when tasks would run without a sandbox."""
    return (
        f"warning: bubblewrap (bwrap) is not usable here: tasks run as {user_name()} with no sandbox and "
        "can read everything that user can (the data dir, the admin key, the agent token, this machine's credential, "
        "other tasks' files); "
        "install bubblewrap to isolate them (docs/isolation.md)"
    )


@dataclass(frozen=True)
class TaskUser:
    """The unprivileged user a root agent runs its tasks as (SIMPLANE_TASK_USER), and setpriv to become it."""

    name: str
    uid: int
    gid: int
    setpriv: str

    @classmethod
    def named(cls, name: str, bwrap: str | None) -> TaskUser:
        """Raises ValueError saying why tasks cannot run as `name` here."""
        if os.geteuid() != 0:
            raise ValueError("SIMPLANE_TASK_USER needs an agent running as root")
        if bwrap is None:
            raise ValueError("SIMPLANE_TASK_USER needs bubblewrap (bwrap)")
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise ValueError("SIMPLANE_TASK_USER needs setpriv (util-linux)")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"SIMPLANE_TASK_USER: no user {name!r}") from None
        if entry.pw_uid == 0:
            raise ValueError(f"SIMPLANE_TASK_USER: {name!r} is root")
        return cls(name, entry.pw_uid, entry.pw_gid, setpriv)

    def can_enter(self, directory: Path) -> bool:
        info = directory.stat()
        if info.st_uid == self.uid:
            return bool(info.st_mode & stat.S_IXUSR)
        if info.st_gid == self.gid:
            return bool(info.st_mode & stat.S_IXGRP)
        return bool(info.st_mode & stat.S_IXOTH)

    def give(self, directory: Path) -> None:
        """Makes `directory` and everything in it the task user's."""
        os.chown(directory, self.uid, self.gid)
        for parent, names, files in os.walk(directory):
            for name in (*names, *files):
                os.chown(os.path.join(parent, name), self.uid, self.gid, follow_symlinks=False)


@dataclass(frozen=True)
class TaskDirs:
    """A task's own directories: `work` (its working directory, uploaded as outputs), `home` and `tmp`."""

    work: Path
    home: Path
    tmp: Path

    @classmethod
    def under(cls, task_dir: Path) -> TaskDirs:
        return cls(task_dir / "work", task_dir / "home", task_dir / "tmp")


class Sandbox:
    """Starts task processes: with bubblewrap when `bwrap` is given, else as plain child processes."""

    def __init__(self, bwrap: str | None, hidden: list[Path], task_user: TaskUser | None = None) -> None:
        self.bwrap = bwrap
        # Paths no task may read: the agent's own work directory (its credential, every task's files) and the
        # paths the agent was told about (the server's data dir and config dir for the agents of `simplane up`).
        self.hidden = [path.absolute() for path in hidden]
        self.task_user = task_user
        self.user = task_user.name if task_user is not None else user_name()

    def environment(self, task_id: str, attempt: int, dirs: TaskDirs, own: dict[str, str]) -> dict[str, str]:
        env = {
            "PATH": task_path(),
            "HOME": str(dirs.home),
            "PWD": str(dirs.work),
            "TMPDIR": str(dirs.tmp),
            "LANG": "C.UTF-8",
            "USER": self.user,
            "LOGNAME": self.user,
            "SIMPLANE_TASK_ID": task_id,
            "SIMPLANE_TASK_ATTEMPT": str(attempt),
        }
        env.update(own)
        return env

    async def start(self, command: list[str], env: dict[str, str], dirs: TaskDirs) -> TaskProcess:
        """Starts `command` in `dirs.work`, stdout and stderr piped, in a process group of its own."""
        for directory in (dirs.home, dirs.tmp):
            directory.mkdir(mode=0o700, exist_ok=True)
        if self.bwrap is None:
            process = await _spawn(command, env, dirs.work)
            return TaskProcess(process, None)
        _check_runnable(command[0], env.get("PATH", ""), dirs.work)
        if self.task_user is not None:
            for directory in (dirs.work, dirs.home, dirs.tmp):
                await asyncio.to_thread(self.task_user.give, directory)
        info_read, info_write = os.pipe()
        try:
            process = await _spawn(
                [*self._bwrap_arguments(dirs, info_write), "--", *command], env, dirs.work, pass_fds=(info_write,)
            )
        except BaseException:
            os.close(info_read)
            raise
        finally:
            os.close(info_write)
        os.set_blocking(info_read, False)
        return TaskProcess(process, info_read)

    def _bwrap_arguments(self, dirs: TaskDirs, info_fd: int) -> list[str]:
        assert self.bwrap is not None
        # /tmp stays writable, as for any program of the user (many write there whatever TMPDIR says).
        arguments = [self.bwrap, *BASE_VIEW, "--bind", "/tmp", "/tmp"]
        # The task user must reach its directories: the outermost folder on their way that it may not enter is
        # replaced by an empty one (it could read nothing in there anyway), in which the way is made passable.
        closed = None
        if self.task_user is not None:
            closed = next((p for p in reversed(dirs.work.parents) if not self.task_user.can_enter(p)), None)
        if closed is not None:
            arguments += ["--tmpfs", str(closed)]
        for path in self.hidden:
            # A path that does not exist yet cannot be mounted over; the next task hides it once it does.
            if path.is_dir():
                arguments += ["--tmpfs", str(path)]
            elif path.exists():
                arguments += ["--ro-bind", "/dev/null", str(path)]
        if closed is not None:
            for way in reversed(dirs.work.parents[: dirs.work.parents.index(closed)]):
                arguments += ["--perms", "0711", "--dir", str(way)]
        for directory in (dirs.work, dirs.home, dirs.tmp):
            arguments += ["--bind", str(directory), str(directory)]
        arguments += ["--chdir", str(dirs.work), *CONFINEMENT, "--info-fd", str(info_fd)]
        if self.task_user is not None:
            user = self.task_user
            # bwrap (run as root) builds the view and enters the task user's working directory, then setpriv
            # becomes the task user, which clears these capabilities; bwrap's no_new_privs keeps setuid programs
            # from making it root again.
            for capability in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH"):
                arguments += ["--cap-add", capability]
            arguments += ["--", user.setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
            arguments += ["--inh-caps=-all", "--bounding-set=-all"]
        return arguments


class TaskProcess:
    """A started task and the process group that its signals go to.

    Without a sandbox that is the process's own group. With bubblewrap it is the sandbox's group (`--new-session`
    makes its first process, pid 1 of the task's pid namespace, the leader): bwrap itself stays out of it, so a
    SIGTERM reaches the task and not bwrap, whose exit would SIGKILL the task at once. SIGKILL of pid 1 ends
    every process of the namespace, even those that left the group.
    """

    def __init__(self, process: asyncio.subprocess.Process, info_fd: int | None) -> None:
        self.process = process
        self._info_fd = info_fd
        self._info = b""
        self._group: int | None = process.pid if info_fd is None else None

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._signal_group(), sig)

    def close(self) -> None:
        if self._info_fd is not None:
            os.close(self._info_fd)
            self._info_fd = None

    def _signal_group(self) -> int:
        if self._group is None and self._info_fd is not None:
            self._group = self._read_child_pid()
        # If bwrap never said where the sandbox is (it failed), its own group.
        return self._group if self._group is not None else self.process.pid

    def _read_child_pid(self) -> int | None:
        """The pid bwrap writes (in pieces) to the info pipe right after starting the sandbox; a kill in the
        sandbox's first milliseconds waits for it, briefly."""
        assert self._info_fd is not None
        deadline = time.monotonic() + INFO_WAIT
        while (found := CHILD_PID.search(self._info)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._info_fd], [], [], remaining)[0]:
                return None
            try:
                data = os.read(self._info_fd, 4096)
            except BlockingIOError:
                continue
            if not data:
                return None
            self._info += data
        return int(found[1])


def _check_runnable(program: str, path: str, cwd: Path) -> None:
    """Raises what exec would for a program that cannot run, since bwrap would only say so on stderr."""
    if "/" not in program:
        if shutil.which(program, path=path) is None:
            raise FileNotFoundError(2, "No such file or directory", program)
        return
    full = cwd / program
    if not full.is_file():
        raise FileNotFoundError(2, "No such file or directory", program)
    if not os.access(full, os.X_OK):
        raise PermissionError(13, "Permission denied", program)


async def _spawn(
    command: list[str], env: dict[str, str], cwd: Path, pass_fds: tuple[int, ...] = ()
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=env,
        start_new_session=True,
        umask=TASK_UMASK,
        pass_fds=pass_fds,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
