"""Real simplane processes for the tests: `simplane up`, extra `simplane agent`s and CLI calls.

Every process starts in its own session so that it and its children can be killed as a group; whatever a
Cluster started is killed when it closes, even after a failed test.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

READY_LINE = re.compile(r"simplane is up: grpc=(\S+) console=(\S+) data=(\S+) agents=(\d+)")
READY_TIMEOUT = 20
STOP_TIMEOUT = 10
CLI = [sys.executable, "-m", "simplane.cli"]
T = TypeVar("T")


class ClusterError(RuntimeError):
    """A simplane process did not start or stop as it should; the message carries its output."""


def base_env() -> dict[str, str]:
    """The test process's environment without any SIMPLANE_* setting that would leak into the cluster."""
    return {name: value for name, value in os.environ.items() if not name.startswith("SIMPLANE_")}


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`simplane ARGS...` as a subprocess, with its output captured as text."""
    return subprocess.run(
        [*CLI, *args],
        env=base_env() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _parent_and_start(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or None; the start time tells a recycled pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def descendants(roots: list[int]) -> list[tuple[int, int]]:
    """(pid, start time) of every live descendant of the given processes."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _parent_and_start(int(entry.name))
            if info is not None:
                children.setdefault(info[0], []).append((int(entry.name), info[1]))
    found, pending = [], list(roots)
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child[0])
    return found


def alive(process: tuple[int, int]) -> bool:
    """Whether the (pid, start time) from `descendants` still runs."""
    info = _parent_and_start(process[0])
    return info is not None and info[1] == process[1]


def _kill_if_same(pid: int, start_time: int) -> None:
    if alive((pid, start_time)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class AgentProcess:
    """A `simplane agent` subprocess joined to a cluster; its output goes to `log`, its machine's identity and
    tasks to `work_dir`."""

    def __init__(self, process: subprocess.Popen, log: Path, work_dir: Path) -> None:
        self.process = process
        self.log = log
        self.work_dir = work_dir

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the agent to exit by itself; returns its exit code."""
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the agent, as if its machine died; the tasks it ran die with it."""
        running = descendants([self.process.pid])
        _kill_group(self.process)
        for pid, start_time in running:
            _kill_if_same(pid, start_time)


class Cluster:
    """`simplane up` on a temporary data dir, with helpers to talk to it.

    The gRPC port is chosen by the server the first time (port 0) and reused on `restart`, so clients
    created before a restart reconnect to the same address.
    """

    def __init__(
        self,
        root: Path,
        *,
        agents: int = 1,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        """`data_dir` puts the server's data dir elsewhere than root/"server", e.g. on a small filesystem."""
        self.root = root
        self.agents = agents
        self.database_url = database_url
        self.data_dir = data_dir or root / "server"
        self.config_dir = root / "config"
        self.env = {
            **base_env(),
            "XDG_CONFIG_HOME": str(self.config_dir),
            "XDG_DATA_HOME": str(root / "xdg-data"),
            "SIMPLANE_HEARTBEAT_INTERVAL": "0.5",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.address = ""
        self.console_url = ""
        self._port = 0
        self._server: subprocess.Popen[str] | None = None
        self._processes: list[subprocess.Popen] = []
        self._strays: list[tuple[int, int]] = []
        self._output: list[str] = []
        self._closeables: list[Any] = []
        self._agent_logs: list[Path] = []
        root.mkdir(parents=True, exist_ok=True)

    # --- the server process -------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start `simplane up` and wait for its ready line."""
        if self._server is not None and self._server.poll() is None:
            raise ClusterError("the server is already running")
        command = [
            *CLI,
            "up",
            "--address",
            f"127.0.0.1:{self._port}",
            "--http-address",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            "--agents",
            str(self.agents),
        ]
        if self.database_url:
            command += ["--database-url", self.database_url]
        self._output.append(f"$ {' '.join(command)}\n")
        server = subprocess.Popen(
            command,
            env=self.env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._server = server
        self._processes.append(server)
        lines: queue.Queue[str | None] = queue.Queue()
        assert server.stdout is not None
        threading.Thread(target=self._read_output, args=(server.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                _kill_group(server)
                raise ClusterError(f"no ready line within {READY_TIMEOUT} s:\n{self.output()}") from None
            if line is None:
                server.wait()
                raise ClusterError(f"simplane up exited with {server.returncode}:\n{self.output()}")
            ready = READY_LINE.search(line)
            if ready:
                break
        self.address, self.console_url = ready.group(1), ready.group(2)
        self._port = int(self.address.rsplit(":", 1)[1])
        return self

    def _read_output(self, stream: IO[str], lines: queue.Queue[str | None]) -> None:
        """Keep draining the server's output so that it never blocks on a full pipe."""
        for line in stream:
            self._output.append(line)
            lines.put(line)
        lines.put(None)

    def output(self) -> str:
        """Everything the server printed, across restarts, then the log of each agent from `start_agent`."""
        agents = "".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for log in self._agent_logs)
        return "".join(self._output) + agents

    @property
    def server_pid(self) -> int:
        assert self._server is not None
        return self._server.pid

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the server (it stops its own agents) and wait for it; returns its exit code."""
        assert self._server is not None
        self._strays.extend(descendants([self._server.pid]))
        self._server.send_signal(signal.SIGTERM)
        try:
            return self._server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self._server)
            raise ClusterError(f"simplane up did not stop within {timeout} s:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL the server and the agents it started, as in a crash."""
        assert self._server is not None
        self._strays.extend(descendants([self._server.pid]))
        _kill_group(self._server)

    def restart(self) -> Cluster:
        """Start the server again on the same data dir, port and database."""
        return self.start()

    # --- talking to it ------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The admin key `simplane up` wrote to the config file."""
        config = tomllib.loads((self.config_dir / "simplane" / "config.toml").read_text())
        return config["api_key"]

    def client(self, api_key: str | None = None, address: str | None = None) -> Any:
        """A simplane.Client for this cluster, closed with it; the admin's unless `api_key` is given."""
        import simplane

        client = simplane.Client(address=address or self.address, api_key=api_key or self.api_key)
        self._closeables.append(client)
        return client

    def channel(self) -> Any:
        """A raw gRPC channel, for checks below the client (status codes, revisions, frames)."""
        import grpc

        channel = grpc.insecure_channel(self.address)
        self._closeables.append(channel)
        return channel

    def stub(self, stub_class: Callable[[Any], T]) -> T:
        """A raw stub on a new channel, e.g. `cluster.stub(task_pb2_grpc.TaskServiceStub)`."""
        return stub_class(self.channel())

    def metadata(self, api_key: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {api_key or self.api_key}"),)

    def create_user(self, name: str, admin: bool = False) -> str:
        """Create a user through the API and return their API key."""
        _, secret = self.client().account.create_user(name, admin=admin)
        return secret

    def create_agent_token(self, machine_group: str = "local") -> str:
        return self.client().machine_groups.create_agent_token(machine_group)

    def start_agent(
        self,
        machine_group: str = "local",
        slots: int | None = None,
        token: str | None = None,
        server: str | None = None,
        work_dir: Path | None = None,
    ) -> AgentProcess:
        """Run `simplane agent` joined to this cluster, in its own session (with a new token by default).

        `server` is the address the agent dials instead of the cluster's, e.g. a TcpProxy's in front of it.
        `work_dir` is another agent's, to start it again as the same machine (a new one by default).
        """
        name = f"agent-{len(self._agent_logs) + 1}"
        work_dir = work_dir or self.root / name
        command = [
            *CLI,
            "agent",
            "--server",
            server or self.address,
            "--token",
            token or self.create_agent_token(machine_group),
            "--machine-group",
            machine_group,
            "--work-dir",
            str(work_dir),
        ]
        if slots is not None:
            command += ["--slots", str(slots)]
        log = self.root / f"{name}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append(process)
        self._agent_logs.append(log)
        return AgentProcess(process, log, work_dir)

    def run_cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`simplane ARGS...` against this cluster (address and key from the config `up` wrote)."""
        return run_cli(*args, env=self.env, cwd=self.root, timeout=timeout)

    # --- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything this cluster started: politely first, then SIGKILL, then any leftover children."""
        for closeable in self._closeables:
            try:
                closeable.close()
            except Exception as error:  # a broken client must not keep processes alive
                self._output.append(f"closing {closeable!r} failed: {error!r}\n")
        live = [process for process in self._processes if process.poll() is None]
        self._strays.extend(descendants([process.pid for process in live]))
        for process in live:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in live:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _kill_group(process)
        for pid, start_time in self._strays:
            _kill_if_same(pid, start_time)
