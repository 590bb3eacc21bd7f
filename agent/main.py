"""The agent program: `python -m simplane.agent` and `simplane agent`."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import grpc

from simplane.agent import machine_identity
from simplane.agent.connection import CHANNEL_OPTIONS, AgentIdentity, FatalConnectError, ServerConnection
from simplane.agent.machine_identity import MachineIdentity, MachineIdentityError
from simplane.agent.sandbox import Sandbox, TaskUser, find_bwrap, unsandboxed_warning


def run_agent(
    server: str,
    token: str | None,
    machine_group: str = "local",
    slots: int | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    hidden: list[str] | None = None,
    warn_unsandboxed: bool = True,
) -> int:
    """Runs the agent until SIGTERM or SIGINT (exit code 0) or until the server refuses it (exit code 1).

    The first run joins the machine group with `token`; later runs are the same machine, with the credential
    stored in the work directory, and need no token. Tasks never see the work directory beyond their own, nor
    the `hidden` paths. `warn_unsandboxed` is False for the agents of `simplane up`, which says it once for all.
    """
    directory = (Path(work_dir) if work_dir is not None else _default_work_dir()).absolute()
    try:
        (directory / "tasks").mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)  # tasks read only their own directories
        stored = machine_identity.load(directory)
    except OSError as err:
        print(f"simplane agent: cannot use work directory {directory}: {err.strerror}", file=sys.stderr)
        return 1
    except MachineIdentityError as err:
        print(f"simplane agent: {err}", file=sys.stderr)
        return 1
    if stored is not None and stored.machine_group != machine_group:
        print(
            f"simplane agent: {machine_identity.path(directory)} is machine {stored.machine_id} of machine group "
            f"{stored.machine_group!r}; give machine group {machine_group!r} a work directory of its own",
            file=sys.stderr,
        )
        return 1
    if stored is None and not token:
        print("simplane agent: joining needs an agent token (--token or SIMPLANE_AGENT_TOKEN)", file=sys.stderr)
        return 1
    bwrap = find_bwrap()
    task_user = None
    if user_name := os.environ.get("SIMPLANE_TASK_USER"):
        try:
            task_user = TaskUser.named(user_name, bwrap)
        except ValueError as err:
            print(f"simplane agent: {err}", file=sys.stderr)
            return 1
    sandbox = Sandbox(bwrap, [directory, *(Path(path) for path in hidden or ())], task_user)
    if sandbox.bwrap is None and warn_unsandboxed:
        print(f"simplane agent: {unsandboxed_warning()}", file=sys.stderr, flush=True)
    slots = slots or os.cpu_count() or 1
    return asyncio.run(_serve(server, token or "", stored, machine_group, slots, directory, sandbox))


def _reap_children_with_pidfds() -> None:
    """Python 3.11 waits for each task process in a thread of its own; a pidfd costs no thread.
    (3.12 does this by itself.)"""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # the kernel has no pidfds
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


async def _serve(
    server: str,
    token: str,
    stored: MachineIdentity | None,
    machine_group: str,
    slots: int,
    work_dir: Path,
    sandbox: Sandbox,
) -> int:
    _reap_children_with_pidfds()
    stop = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    running = asyncio.create_task(_run(server, token, stored, machine_group, slots, work_dir, sandbox))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((running, stopping), return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()
        return 0
    except MachineIdentityError as err:
        print(f"simplane agent: {err}", file=sys.stderr, flush=True)
        return 1
    except FatalConnectError as err:
        if stored is not None and err.code == grpc.StatusCode.UNAUTHENTICATED:
            print(
                f"simplane agent: the server at {server} refused the credential of machine {stored.machine_id} "
                f"(revoked, or another server's): delete {machine_identity.path(work_dir)} to join as a new machine",
                file=sys.stderr,
                flush=True,
            )
        else:
            print(f"simplane agent: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        running.cancel()
        stopping.cancel()
        await asyncio.gather(running, stopping, return_exceptions=True)


async def _run(
    server: str,
    token: str,
    stored: MachineIdentity | None,
    machine_group: str,
    slots: int,
    work_dir: Path,
    sandbox: Sandbox,
) -> None:
    """Joins unless the machine has already, then keeps connected until cancelled (which kills its tasks)."""
    hostname = socket.gethostname()
    identity = stored
    if identity is None:
        async with grpc.aio.insecure_channel(server, options=CHANNEL_OPTIONS) as channel:
            identity = await machine_identity.join(channel, server, token, machine_group, hostname, _version())
        machine_identity.store(work_dir, identity)
    agent = AgentIdentity(
        agent_id=identity.machine_id, machine_group=machine_group, hostname=hostname, slots=slots, version=_version()
    )
    connection = ServerConnection(server, identity.credential, agent, work_dir, sandbox)
    try:
        await connection.run()
    finally:
        await connection.close()


def _exit_with_parent() -> None:
    """A local agent of `simplane up` (which names itself in SIMPLANE_AGENT_PARENT) goes when `up` goes, even if
    `up` was SIGKILLed, rather than retrying a server that is gone (Linux)."""
    parent = os.environ.pop("SIMPLANE_AGENT_PARENT", None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simplane agent", description="Run simplane tasks on this machine.")
    parser.add_argument("--server", default=os.environ.get("SIMPLANE_SERVER"), help="the server's HOST:PORT")
    parser.add_argument(
        "--token",
        default=os.environ.get("SIMPLANE_AGENT_TOKEN"),
        help="agent token (SIMPLANE_AGENT_TOKEN), to join once; later runs use the machine's stored credential",
    )
    parser.add_argument(
        "--connect-from-stdin",
        action="store_true",
        help="read the server's HOST:PORT and the token from stdin, a line each (how `simplane up` starts its "
        "agents before its port is known)",
    )
    parser.add_argument("--machine-group", default="local")
    parser.add_argument("--slots", type=int, help="CPUs' worth of tasks to run at once (default: CPU count)")
    parser.add_argument("--work-dir", help="where task working directories go")
    parser.add_argument(
        "--hide",
        action="append",
        default=[],
        metavar="PATH",
        help="a file or directory no task may read (repeatable; the work directory is always hidden); needs bubblewrap",
    )
    args = parser.parse_args(argv)
    if args.connect_from_stdin:
        args.server, args.token = (sys.stdin.readline().strip() for _ in range(2))
        if not (args.server and args.token):
            return 1  # `simplane up` stopped before it could tell where to connect
    if not args.server:
        parser.error("--server is required (or set SIMPLANE_SERVER)")
    if args.slots is not None and args.slots < 1:
        parser.error("--slots must be at least 1")
    logging.basicConfig(format="simplane agent: %(message)s", level=logging.WARNING)
    of_up = "SIMPLANE_AGENT_PARENT" in os.environ
    _exit_with_parent()
    return run_agent(
        args.server, args.token, args.machine_group, args.slots, args.work_dir, args.hide, warn_unsandboxed=not of_up
    )


def _default_work_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "simplane" / "agent"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("simplane")
    except PackageNotFoundError:
        return "unknown"
