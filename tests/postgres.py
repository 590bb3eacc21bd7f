"""A throwaway PostgreSQL server for the test session, run from the Debian binaries.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server runs as the
`postgres` user in a directory it owns.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
from waiting import eventually

_START_TIMEOUT = 30


def postgres_bin_dir() -> Path:
    """The bin directory of the newest PostgreSQL installed under /usr/lib/postgresql."""
    found = glob.glob("/usr/lib/postgresql/*/bin")
    if not found:
        raise RuntimeError("no PostgreSQL under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return Path(max(found, key=lambda path: int(Path(path).parent.name.split(".")[0])))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresCrashed(RuntimeError):
    """The postmaster was killed by a signal while starting."""


class PostgresServer:
    """One PostgreSQL instance in a temporary directory; `create_database` gives each test its own."""

    def __init__(self) -> None:
        self._bin = postgres_bin_dir()
        self._root = Path(tempfile.mkdtemp(prefix="simplane-postgresql-"))
        # The user and group to run PostgreSQL as: root's tests run it as postgres, since it refuses root.
        self._as = "postgres" if os.geteuid() == 0 else None
        if self._as:
            shutil.chown(self._root, "postgres", "postgres")
        self.port = free_port()
        self._names = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def _log(self) -> Path:
        return self._root / "postgresql.log"

    def start(self) -> None:
        data, sockets = self._root / "data", self._root / "sockets"
        self._run_as_postgres(["mkdir", str(sockets)])
        self._run_as_postgres(
            [
                str(self._bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        self._launch()

    def _launch(self) -> None:
        data, sockets = self._root / "data", self._root / "sockets"
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self._bin / "postgres"),
                    "-D",
                    str(data),
                    "-k",
                    str(sockets),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._root,
                start_new_session=True,
                user=self._as,
                group=self._as,
            )
        try:
            eventually(self._accepts_connections, timeout=_START_TIMEOUT, interval=0.05)
        except AssertionError:
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start:\n{self._log.read_text(errors='replace')}") from None

    def _run_as_postgres(self, command: list[str]) -> None:
        done = subprocess.run(command, cwd=self._root, capture_output=True, text=True, user=self._as, group=self._as)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _accepts_connections(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            error = PostgresCrashed if self._process.returncode < 0 else RuntimeError
            raise error(f"PostgreSQL exited with {self._process.returncode}:\n{self._log.read_text(errors='replace')}")
        try:
            with self._connect():
                return True
        except psycopg.OperationalError:
            return False

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True, connect_timeout=5
        )

    def create_database(self) -> tuple[str, str]:
        """A new empty database: its name and its SQLAlchemy URL."""
        name = f"test_{next(self._names)}"
        with self._connect() as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return name, f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, name: str) -> None:
        with self._connect() as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def halt(self) -> None:
        """Shuts the server down ("fast": clients are disconnected), keeping its data for `resume`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGINT)
        self._process.wait(timeout=30)

    def resume(self) -> None:
        """Starts the server again after `halt`, on the same data and port.

        In this container a postmaster started right after a fast shutdown now and then dies of SIGSEGV before it
        logs a line (seen 2 times in 6); a second start works, so it gets up to three.
        """
        for attempt in range(3):
            try:
                self._launch()
                return
            except PostgresCrashed:
                if attempt == 2:
                    raise

    def freeze(self) -> None:
        """Stops every process of the server (SIGSTOP): connections stay open and nothing answers. Each backend
        has a session of its own, so they are found as the postmaster's children."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: int) -> None:
        assert self._process is not None
        postmaster = self._process.pid
        with contextlib.suppress(ProcessLookupError):  # first, so that it forks no backend we miss
            os.kill(postmaster, signum)
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                text = Path(stat).read_text()
            except OSError:
                continue
            if int(text.rsplit(")", 1)[1].split()[1]) == postmaster:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(Path(stat).parent.name), signum)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, then exit
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        shutil.rmtree(self._root, ignore_errors=True)
