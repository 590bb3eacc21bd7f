"""`simplane up`: the server, the local machine group and its agents, on one machine with no setup."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import signal
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from simplane._config import config_path
from simplane.agent.sandbox import find_bwrap, unsandboxed_warning
from simplane.server.errors import DomainError

if TYPE_CHECKING:
    from sqlmodel import Session

    from simplane.server.app import ServerApp

T = TypeVar("T", int, float)
ORIGIN = re.compile(r"(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?", re.IGNORECASE)
ADMIN = "admin"
AGENT_START_TIMEOUT = 15.0
# Stopping `up` ends the local agents' tasks: SIGTERM, SIGKILL after this grace, and then at most STOP_WAIT for
# their ends and outputs to be stored.
STOP_REASON = "server stopped"
STOP_GRACE = 2.0
STOP_WAIT = 10.0
# Everything `up` and the server create (database, logs, stored files, tokens) is for the user running it alone.
PRIVATE_UMASK = 0o077


@dataclass
class UpOptions:
    data_dir: Path
    address: str = "127.0.0.1:50051"
    http_address: str = "127.0.0.1:8080"
    agents: int = 1
    database_url: str | None = None
    disable_auth: bool = False
    # Web origins (scheme://host[:port]) besides the console's own whose pages may call the gRPC-web API.
    cors_origins: list[str] = field(default_factory=list)


class UpError(Exception):
    """A reason `simplane up` cannot start, for one line on stderr."""


def run_up(options: UpOptions) -> int:
    try:
        return asyncio.run(_up(options))
    except (UpError, DomainError) as error:  # DomainError: the store refused to start (a database too new)
        print(f"error: {error}", file=sys.stderr)
        return 1


def _split_address(flag: str, address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UpError(f"{flag} must be HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _web_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, without a default port."""
    match = ORIGIN.fullmatch(origin.strip())
    if match is None:
        raise UpError(f"--cors-origin must be SCHEME://HOST[:PORT] with scheme http or https, got {origin!r}")
    scheme, host, port = match[1].lower(), match[2].lower(), match[3]
    if port is not None and (scheme, port) not in (("http", ":80"), ("https", ":443")):
        host += port
    return f"{scheme}://{host}"


def _loopback_target(host: str, port: int) -> str:
    """Where this process reaches its own gRPC server: a wildcard address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _number_from_env(name: str, default: T, kind: Callable[[str], T]) -> T:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise UpError(f"{name} must be a number, got {text!r}") from None
    if value <= 0:
        raise UpError(f"{name} must be above zero, got {text!r}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _up(options: UpOptions) -> int:
    with _stop_on_signals() as stop:
        return await _serve(options, stop)


async def _serve(options: UpOptions, stop: asyncio.Event) -> int:
    host, _port = _split_address("--address", options.address)
    http_host, http_port = _split_address("--http-address", options.http_address)
    if options.agents < 0:
        raise UpError("--agents must be 0 or more")
    loopback = _is_loopback(host)
    if options.disable_auth and not loopback:
        raise UpError(f"refusing to serve {options.address} without auth: only loopback addresses may disable it")
    if options.disable_auth and not _is_loopback(http_host):
        raise UpError(f"refusing to serve {options.http_address} without auth: only loopback addresses may disable it")
    cors_origins = [_web_origin(origin) for origin in options.cors_origins]
    heartbeat_interval = _number_from_env("SIMPLANE_HEARTBEAT_INTERVAL", 5.0, float)
    machine_lost_after = _number_from_env("SIMPLANE_MACHINE_LOST_AFTER", 600.0, float)
    max_active_tasks = _number_from_env("SIMPLANE_MAX_ACTIVE_TASKS", 10_000, int)
    data_dir = options.data_dir.expanduser().resolve()
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True)
    _make_private(data_dir)
    hidden = [data_dir, config_path().parent]
    # The agents start first, so that their start-up overlaps the server's imports; they learn the server's
    # address and their token on stdin once it listens.
    agent_dirs = [data_dir / "agents" / str(number) for number in range(options.agents)]
    agents = [await _start_agent(work_dir, hidden) for work_dir in agent_dirs]
    sandbox_probe = asyncio.create_task(asyncio.to_thread(find_bwrap)) if agents else None
    try:
        # gRPC's C core would add its own lines to the one-line errors of `up` (a port in use); every failure
        # that matters is reported from Python. Set here, after the agents took their environment.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        from simplane.server.app import ServerApp, ServerSettings
        from simplane.server.http_site import HttpSite
        from simplane.server.store.database import sqlite_url

        settings = ServerSettings(
            data_dir=data_dir,
            database_url=options.database_url or sqlite_url(str(data_dir / "simplane.db")),
            disable_auth=options.disable_auth,
            heartbeat_interval=heartbeat_interval,
            machine_lost_after=machine_lost_after,
            max_active_tasks=max_active_tasks,
        )
        app = ServerApp(settings)
        try:
            port = await app.start(options.address)
        except OSError as error:
            app.database.close()
            raise UpError(f"cannot listen on {options.address}: {error}") from None
        grpc_address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        site = HttpSite(
            _loopback_target(host, port), cors_origins=cors_origins, loopback_hosts_only=options.disable_auth
        )
        try:
            try:
                http_port = await site.start(http_host, http_port)
            except OSError as error:
                raise UpError(f"cannot listen on {options.http_address}: {error}") from None
            agent_token = app.database.call(
                _prepare_accounts, app, data_dir, grpc_address, loopback, options.disable_auth
            )
            app.database.call(_check_machine_identities, app, agent_dirs)
            app.groups.ensure_local(ADMIN)
            for process in agents:
                await _hand_over(process, grpc_address, agent_token)
            if not await app.hub.wait_for_agents("local", options.agents, AGENT_START_TIMEOUT):
                print("warning: not every local agent connected in time", file=sys.stderr)
            if sandbox_probe is not None and await sandbox_probe is None:
                print(unsandboxed_warning(), file=sys.stderr)
            http_host_shown = f"[{http_host}]" if ":" in http_host else http_host
            print(
                f"simplane is up: grpc={grpc_address} console=http://{http_host_shown}:{http_port}/ "
                f"data={data_dir} agents={options.agents}",
                flush=True,
            )
            await stop.wait()
            await _end_local_tasks(app)
        finally:
            await _stop_agents(agents)  # before the server, so that they never see it go away
            await site.stop()
            await app.stop()
    finally:
        await _stop_agents(agents)  # after a start that failed; a no-op once they stopped above
    return 0


def _prepare_accounts(
    session: Session, app: ServerApp, data_dir: Path, address: str, loopback: bool, disabled: bool
) -> str:
    """Ensures the admin user, a working admin key in the user's config (on loopback), and the agents' token."""
    from simplane.server.caller import AGENT_KEY, USER_KEY

    accounts = app.accounts
    admin = accounts.ensure_user(session, ADMIN, admin=True)
    if not disabled:
        path = config_path()
        current = _read_config(path)
        key = current.get("api_key", "")
        if not (key and accounts.key_is_valid(session, key, USER_KEY)):
            _row, minted = accounts.add_key(session, admin, description="local admin key (simplane up)")
            key = minted.secret
            if not loopback:
                print(f"admin API key (shown once): {key}", file=sys.stderr)
        if loopback:
            _write_config(path, address, key)
    token_file = data_dir / "agent-token"
    token = token_file.read_text().strip() if token_file.exists() else ""
    if not (token and accounts.key_is_valid(session, token, AGENT_KEY)):
        _row, minted = accounts.add_key(
            session, admin, kind=AGENT_KEY, machine_group="local", description="agents of local (simplane up)"
        )
        token = minted.secret
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
    return token


def _check_machine_identities(session: Session, app: ServerApp, agent_dirs: list[Path]) -> None:
    """Local agents keep their machine across restarts; one this server does not know (a new database) joins again.

    Runs before the agents learn the server's address, which is when they read their identity.
    """
    from simplane.agent import machine_identity
    from simplane.server.caller import MACHINE_KEY

    for work_dir in agent_dirs:
        try:
            stored = machine_identity.load(work_dir)
        except machine_identity.MachineIdentityError:
            stored = None
            machine_identity.forget(work_dir)
        if stored is not None and not (
            stored.machine_group == "local" and app.accounts.key_is_valid(session, stored.credential, MACHINE_KEY)
        ):
            machine_identity.forget(work_dir)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _write_config(path: Path, address: str, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(f'address = "{address}"\napi_key = "{key}"\n')
    temporary.chmod(0o600)
    temporary.replace(path)


def _make_private(data_dir: Path) -> None:
    """The data dir 0700 and the SQLite files 0600, also in a data dir made before `up` set its umask."""
    data_dir.chmod(0o700)
    for name in ("simplane.db", "simplane.db-wal", "simplane.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).chmod(0o600)


async def _end_local_tasks(app: ServerApp) -> None:
    """Ends the tasks running on the local agents as KILLED, "server stopped", with their output and outputs
    stored, before the agents go; queued tasks stay queued and run after the next start."""
    left = await app.tasks.stop_group("local", STOP_REASON, grace=STOP_GRACE, timeout=STOP_WAIT)
    if left:
        print(f"warning: {left} local task(s) did not end within {STOP_WAIT:g}s of stopping", file=sys.stderr)


async def _start_agent(work_dir: Path, hidden: list[Path]) -> asyncio.subprocess.Process:
    """A local agent that waits for the server's address and its token on stdin (see `_hand_over`); its tasks
    cannot read `hidden` (the data dir and the config dir)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SIMPLANE_AGENT_PARENT": str(os.getpid())}
    hide = [argument for path in hidden for argument in ("--hide", str(path))]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simplane.agent",
        "--connect-from-stdin",
        "--machine-group",
        "local",
        "--work-dir",
        str(work_dir),
        *hide,
        env=env,
        stdin=asyncio.subprocess.PIPE,
    )


async def _hand_over(process: asyncio.subprocess.Process, address: str, token: str) -> None:
    """Tells a local agent where to connect and with which token, then closes its stdin."""
    assert process.stdin is not None
    process.stdin.write(f"{address}\n{token}\n".encode())
    with contextlib.suppress(ConnectionError):  # an agent that died already is reported by the wait for agents
        await process.stdin.drain()
    process.stdin.close()


async def _stop_agents(agents: list[asyncio.subprocess.Process]) -> None:
    for process in agents:
        if process.returncode is None:
            process.terminate()
    for process in agents:
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM, caught from the start so that a signal during start-up still stops
    the agents too."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
