"""A throwaway single-node Slurm cluster for the test session, run from Debian's slurm-wlm and munge.

Everything lives under one temporary directory: a munge key and munged's socket, slurm.conf (free ports, the
settings that work in a container without systemd or cgroups), the controller's state and slurmd's spool. The
node has more CPUs than the machine (`SlurmdParameters=config_overrides`) in one partition, `debug`. Jobs run as
the user who runs the tests.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cluster import alive, descendants
from postgres import free_port
from waiting import eventually

PACKAGES = "slurmctld slurmd slurm-client munge"
BINARIES = ("mungekey", "munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel", "scontrol")
NODE = "node1"
PARTITION = "debug"
CPUS = 4
MEMORY_MB = 4096
START_TIMEOUT = 30
STOP_TIMEOUT = 10
LOG_TAIL_LINES = 30


def missing_binaries() -> list[str]:
    """The Slurm and munge programs the cluster needs that are not on PATH (nor in /usr/sbin)."""
    return [name for name in BINARIES if _which(name) is None]


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


class SlurmError(RuntimeError):
    """The cluster did not start or a daemon died; the message carries the daemon's log tail."""


class SlurmCluster:
    """munged, slurmctld and slurmd in a temporary directory: node NODE with CPUS CPUs and MEMORY_MB MB in partition
    PARTITION (the default). `env` is what every Slurm command needs, `run` runs one."""

    def __init__(self) -> None:
        missing = missing_binaries()
        if missing:
            raise SlurmError(f"{', '.join(missing)} not found: apt-get install {PACKAGES}")
        self.root = Path(tempfile.mkdtemp(prefix="simplane-slurm-"))
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge.socket"
        # Slurm reads SLURM_CONF; slurm.conf names munged's socket (AuthInfo), so nothing else is needed.
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> SlurmCluster:
        """Starts munged, then slurmctld and slurmd; returns once sinfo shows the node idle."""
        atexit.register(self.stop)  # an interrupted session still stops the daemons and the jobs' processes
        try:
            self._start_munge()
            self._write_conf()
            self._launch("slurmctld", ["-D", "-i", "-f", str(self.conf)])
            self._launch("slurmd", ["-D", "-f", str(self.conf), "-N", NODE])
            self._wait(self._node_idle, f"node {NODE} idle")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def daemon_pids(self) -> dict[str, int]:
        """The pids of munged, slurmctld and slurmd, by name."""
        return {daemon: process.pid for daemon, process in self._daemons.items()}

    def kill(self, daemon: str) -> None:
        """SIGKILLs one daemon ("slurmctld", "slurmd" or "munged") and reaps it, as when it crashes."""
        process = self._daemons[daemon]
        process.kill()
        process.wait()

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm command (`run("sbatch", ...)`) against this cluster, output captured as text."""
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        self._check_call(["mungekey", "--create", f"--keyfile={key}"])
        key.chmod(0o400)
        # --force: munged refuses a socket under a folder that lacks o+x, such as a 0700 temporary directory.
        self._launch(
            "munged",
            [
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munged.pid'}",
                f"--seed-file={self.root / 'munged.seed'}",
            ],
        )
        self._wait(
            lambda: self._alive("munged") and self.munge_socket.exists(), f"munged listening on {self.munge_socket}"
        )

    def _write_conf(self) -> None:
        (self.root / "plugstack.conf").touch()
        for folder in ("state", "spool"):
            (self.root / folder).mkdir()
        user = getpass.getuser()
        lines = {
            "ClusterName": "simplane",
            "SlurmctldHost": f"{socket.gethostname().split('.')[0]}(127.0.0.1)",  # slurmctld checks its host name
            "SlurmUser": user,
            "SlurmdUser": user,
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.root / "slurmctld.log",
            "SlurmdLogFile": self.root / "slurmd.log",
            "PlugStackConfig": self.root / "plugstack.conf",
            # No cgroups in a container: processes tracked by parentage, no task binding, no accounting daemon.
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": self.root / "jobcomp.log",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "SlurmdParameters": "config_overrides",  # CPUs= and RealMemory= may exceed the machine
            "EnforcePartLimits": "ALL",  # an impossible request is refused at sbatch, not left pending forever
            "ReturnToService": 2,
            "MailProg": "/bin/true",
            "MinJobAge": 300,
            "KillWait": 5,
            "SchedulerParameters": "batch_sched_delay=0,sched_min_interval=0",  # a job starts within a second
            "NodeName": f"{NODE} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={MEMORY_MB} State=UNKNOWN",
            "PartitionName": f"{PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        }
        self.conf.write_text("".join(f"{name}={value}\n" for name, value in lines.items()))

    def _launch(self, daemon: str, args: list[str]) -> None:
        with (self.root / f"{daemon}.out").open("ab") as out:
            self._daemons[daemon] = subprocess.Popen(
                [str(_which(daemon)), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self.env,
                start_new_session=True,
            )

    def _check_call(self, command: list[str]) -> None:
        done = subprocess.run([str(_which(command[0])), *command[1:]], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise SlurmError(f"{command[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _wait(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            eventually(predicate, timeout=START_TIMEOUT, interval=0.05)
        except AssertionError:
            raise SlurmError(f"not {what} within {START_TIMEOUT} s\n{self._logs()}") from None

    def _alive(self, daemon: str) -> bool:
        """Whether the daemon still runs; raises with its log tail if it exited."""
        process = self._daemons[daemon]
        if process.poll() is not None:
            raise SlurmError(f"{daemon} exited with {process.returncode}\n{self._logs(daemon)}")
        return True

    def _node_idle(self) -> bool:
        for daemon in self._daemons:
            self._alive(daemon)
        return self.run("sinfo", "-h", "-n", NODE, "-o", "%t").stdout.strip() == "idle"

    def _logs(self, *daemons: str) -> str:
        """The last lines the named daemons (all by default) wrote to stderr: in the foreground, Slurm's daemons
        write there all they log, failures before their log file opens included."""
        parts = []
        for daemon in daemons or tuple(self._daemons):
            lines = (self.root / f"{daemon}.out").read_text(errors="replace").splitlines()
            parts.append(f"--- {daemon}, last {LOG_TAIL_LINES} lines\n" + "\n".join(lines[-LOG_TAIL_LINES:]))
        return "\n".join(parts)

    def job_steps(self) -> list[tuple[int, int]]:
        """(pid, start time) of this cluster's slurmstepd processes: each runs a job in a session of its own,
        a child of init rather than of slurmd, and holds slurmd's log under this cluster's directory open."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() != "slurmstepd":
                    continue
                if any(
                    os.readlink(fd).startswith(f"{self.root}/") for fd in (entry / "fd").iterdir() if fd.is_symlink()
                ):
                    found.append((int(entry.name), int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19])))
        return found

    def stop(self) -> None:
        """Ends the jobs (scancel, while the controller runs), then SIGTERM to the daemons and SIGKILL to what is
        left after STOP_TIMEOUT, jobs' processes included (slurmstepd ignores SIGTERM); removes the directory.
        Idempotent; registered with atexit at start, so an interrupted session still leaves nothing running."""
        atexit.unregister(self.stop)
        controller = self._daemons.get("slurmctld")
        controller_runs = controller is not None and controller.poll() is None
        if controller_runs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.run("scancel", f"--partition={PARTITION}", timeout=STOP_TIMEOUT)
                with contextlib.suppress(AssertionError):
                    eventually(lambda: not self.job_steps(), timeout=STOP_TIMEOUT, interval=0.05)
        for daemon, process in self._daemons.items():
            if process.poll() is None:
                # slurmd's shutdown tells the controller; with none to answer, it would wait MessageTimeout (10 s).
                process.send_signal(signal.SIGTERM if controller_runs or daemon != "slurmd" else signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self._daemons.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        steps = self.job_steps()
        for pid, start_time in [*steps, *descendants([pid for pid, _ in steps])]:
            if alive((pid, start_time)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for process in self._daemons.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._daemons.clear()
        shutil.rmtree(self.root, ignore_errors=True)
