"""The `simplane` command: the root app with `up`, `agent` and `run`; `tasks` and `admin` are mounted here.

Only Typer is imported at module level: the client, grpc and Rich load inside the commands that use them,
so `simplane --help` stays fast.
"""

from __future__ import annotations

import os
import shlex
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simplane.cli import admin, tasks
from simplane.cli.connection import connect
from simplane.cli.errors import INTERRUPTED, CommandGroup

if TYPE_CHECKING:
    import simplane

app = typer.Typer(
    cls=CommandGroup,
    name="simplane",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(tasks.app, name="tasks")
app.add_typer(admin.app, name="admin")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"simplane {version('simplane')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run simulation tasks on machine groups.

    The client commands read the server address and API key from SIMPLANE_ADDRESS and SIMPLANE_API_KEY,
    else from the config file that `simplane up` writes.

    \b
    Quick start:
      simplane up                                  # in one terminal
      simplane run -- python -c "print('hello')"   # in another
      simplane tasks list
    """


def _default_data_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data_home) / "simplane"


@app.command()
def up(
    address: Annotated[
        str, typer.Option(envvar="SIMPLANE_ADDRESS", metavar="HOST:PORT", help="Where gRPC clients connect.")
    ] = "127.0.0.1:50051",
    http_address: Annotated[
        str,
        typer.Option(
            envvar="SIMPLANE_HTTP_ADDRESS",
            metavar="HOST:PORT",
            help="Where the web console and its gRPC-web API are served.",
        ),
    ] = "127.0.0.1:8080",
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            envvar="SIMPLANE_CORS_ORIGINS",
            metavar="ORIGIN",
            help="Also let pages of this origin (e.g. https://dash.example.org) call the gRPC-web API; repeatable.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="SIMPLANE_DATA_DIR",
            metavar="DIR",
            show_default="$XDG_DATA_HOME/simplane, else ~/.local/share/simplane",
            help="Database, logs, task files and agent work directories.",
        ),
    ] = None,
    agents: Annotated[
        int,
        typer.Option(
            envvar="SIMPLANE_AGENTS",
            min=0,
            metavar="N",
            help="Local agents to start; 0 lets agents join from elsewhere.",
        ),
    ] = 1,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="SIMPLANE_DATABASE_URL",
            metavar="URL",
            show_default="an SQLite file in the data dir",
            help="A PostgreSQL URL (postgresql://...) to keep the state there instead.",
        ),
    ] = None,
    disable_auth: Annotated[
        bool,
        typer.Option(
            "--disable-auth",
            envvar="SIMPLANE_DISABLE_AUTH",
            help="Accept calls without an API key (loopback only).",
        ),
    ] = False,
) -> None:
    """Start the server and the local machine group's agents.

    Runs until Ctrl-C or SIGTERM, which stop the agents and then the server. Prints one line with the addresses once ready. On a loopback address it also writes the address and an
    admin API key to the config file, so the other commands work right away.

    \b
    Examples:
      simplane up
      simplane up --agents 4 --data-dir /tmp/simplane
      SIMPLANE_DATABASE_URL=postgresql://localhost/simplane simplane up
    """
    from simplane.server.up import UpOptions, run_up

    options = UpOptions(
        address=address,
        http_address=http_address,
        data_dir=data_dir or _default_data_dir(),
        agents=agents,
        database_url=database_url,
        disable_auth=disable_auth,
        cors_origins=cors_origin or [],
    )
    raise typer.Exit(run_up(options))


@app.command()
def agent(
    server: Annotated[str, typer.Option(envvar="SIMPLANE_SERVER", metavar="HOST:PORT", help="The server to join.")],
    token: Annotated[
        str | None,
        typer.Option(
            envvar="SIMPLANE_AGENT_TOKEN",
            metavar="TOKEN",
            show_default="needed only to join",
            help="A join token from `simplane admin agent-token`; prefer the environment variable, which "
            "other users cannot see in the process list. The machine joins once and keeps its own credential in "
            "the work directory.",
        ),
    ] = None,
    machine_group: Annotated[str, typer.Option(metavar="GROUP", help="The machine group to serve.")] = "local",
    slots: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            show_default="the CPU count",
            help="How many CPUs' worth of tasks to run at once.",
        ),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR", show_default="$XDG_DATA_HOME/simplane/agent", help="Where task working directories go."
        ),
    ] = None,
) -> None:
    """Run an agent that takes tasks of a machine group.

    The agent connects to the server, receives the tasks of its machine group and runs them on this host,
    up to its slots at a time.

    \b
    Examples:
      simplane admin agent-token --machine-group lab   # on a host that can reach the server
      SIMPLANE_AGENT_TOKEN=sp_... simplane agent --server 10.0.0.5:50051 --machine-group lab --slots 8
    """
    from simplane.agent.main import run_agent

    raise typer.Exit(run_agent(server, token, machine_group, slots, work_dir))


def _parse_env(assignments: list[str]) -> dict[str, str]:
    env = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{assignment!r}: expected KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    ctx: typer.Context,
    command: Annotated[list[str], typer.Argument(metavar="CMD", help="The program and its arguments.")],
    inputs: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            metavar="PATH",
            help="A directory or file to stage into the task's working directory.",
        ),
    ] = None,
    name: Annotated[str, typer.Option(metavar="NAME", help="A label for the task.")] = "",
    project: Annotated[str, typer.Option(metavar="NAME", help="A project to group tasks by.")] = "",
    time_to_live: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Stop the task (TIMED_OUT) after this long, e.g. 90s, 10m, 2h."),
    ] = None,
    machine_group: Annotated[str, typer.Option(metavar="GROUP", help="Where to run the task.")] = "local",
    cpus: Annotated[int, typer.Option(min=1, metavar="N", help="CPUs the task needs on its machine.")] = 1,
    env: Annotated[
        list[str] | None,
        typer.Option(metavar="KEY=VALUE", help="An environment variable for the task; repeatable."),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Print the task ID and exit without following.")
    ] = False,
    raw: Annotated[bool, tasks.RAW_OPTION] = False,
) -> None:
    """Submit a task and follow it until it ends.

    Exits with the task's exit code. The task's stdout and stderr go to this command's stdout and stderr (on a
    terminal with control sequences other than colours shown as text, unless --raw; piped, byte for byte);
    status changes go to stderr.
    Ctrl-C stops following but leaves the task running. Options go before the command; everything from
    the command on (or after `--`) is the command.

    \b
    Examples:
      simplane run -- python -c "print('hello')"
      simplane run --inputs case/ --name cavity --project demo --time-to-live 10m -- python solve.py
      ID=$(simplane run --detach -- ./long-job.sh); simplane tasks tail $ID -f
    """
    from simplane.cli import output

    with connect(ctx) as client:
        uploading = output.transfer_progress("uploading inputs") if inputs else nullcontext()
        with uploading as progress:
            task = client.tasks.submit(
                command,
                inputs=inputs,
                machine_group=machine_group,
                name=name,
                project=project,
                time_to_live=time_to_live,
                cpus=cpus,
                env=_parse_env(env or []),
                progress=progress,
            )
        if detach:
            typer.echo(task.id)
            return
        submitted = task.last_info or task.info()  # submit returns the task's state: no extra call
        output.print_note(f"task {task.id} {submitted.status.value}: {shlex.join(command)}")
        try:
            raise typer.Exit(_follow(task, first_status=submitted.status.value, raw=raw))
        except KeyboardInterrupt:
            output.print_note(
                f"stopped following; task {task.id} keeps running. Follow it again with: "
                f"simplane tasks tail {task.id} -f"
            )
            raise typer.Exit(INTERRUPTED) from None


def _follow(task: simplane.Task, first_status: str, raw: bool) -> int:
    """Stream the task's output until it ends, with its status changes on stderr; return its exit code."""
    from simplane.cli import output

    statuses = _StatusReporter(task, first_status)
    statuses.start()
    writer = output.TaskOutputWriter(raw=raw, follow=True)
    for line in task.logs(follow=True):
        writer.write(line)
    writer.close()
    statuses.finish()
    return tasks.report_end(task.info())


class _StatusReporter(threading.Thread):
    """Prints each status the task passes through to stderr, beside the log stream of the main thread."""

    def __init__(self, task: simplane.Task, first_status: str) -> None:
        super().__init__(name=f"status of {task.id}", daemon=True)
        self.task = task
        self.last_status = first_status
        self.error: BaseException | None = None

    def run(self) -> None:
        from simplane.cli import output

        machine = ""
        try:
            for info in self.task.watch():
                status = info.status.value
                if status == self.last_status or info.status.is_terminal:
                    continue
                self.last_status = status
                where = f" on {info.machine_id}" if info.machine_id and info.machine_id != machine else ""
                machine = info.machine_id
                output.print_note(f"task {info.id} {status}{where}")
        except BaseException as error:  # handed to the main thread by finish()
            self.error = error

    def finish(self) -> None:
        """Wait briefly for the last status lines; re-raise what broke the status stream, if anything."""
        self.join(timeout=5)
        if self.error is not None:
            raise self.error


def main() -> None:
    app()


if __name__ == "__main__":
    main()
