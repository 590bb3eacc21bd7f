"""`simplane run`: submit a task and follow it until it ends, like running it here."""

from __future__ import annotations

import shlex
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simplane.cli import tasks
from simplane.cli.connection import connect
from simplane.cli.errors import INTERRUPTED

if TYPE_CHECKING:
    import simplane

app = typer.Typer()


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
