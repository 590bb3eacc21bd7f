"""`simplane tasks ...`: list, inspect, follow, kill and fetch the files of tasks."""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from simplane.cli.connection import connect

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.text import Text

    import simplane
    from simplane.cli.output import Cell

app = typer.Typer(help="List, inspect, follow and kill tasks.", no_args_is_help=True, rich_markup_mode=None)

TaskId = Annotated[str, typer.Argument(metavar="ID", help="The task's ID, as `simplane tasks list` shows it.")]
ProjectFilter = Annotated[str | None, typer.Option(metavar="NAME", help="Only this project's tasks.")]
GroupFilter = Annotated[str | None, typer.Option(metavar="GROUP", help="Only this machine group's tasks.")]

RAW_OPTION = typer.Option(
    "--raw",
    help="On a terminal, pass the task's control sequences through as they are; by default only colours pass and "
    "other sequences (titles, screen clearing, clipboard writes, links) are shown as text. Piped output is always "
    "the task's exact bytes.",
)

TASK_COLUMNS = ("ID", "NAME", "STATUS", "PROJECT", "GROUP", "CREATED", "DURATION", "EXIT")


def _task_row(info: simplane.TaskInfo, now: datetime) -> list[Cell]:
    from simplane.cli import output

    duration = info.metrics.total
    if not info.status.is_terminal and info.create_time is not None:
        duration = now - output.to_utc(info.create_time)  # still running: keeps growing in a live view
    return [
        info.id,
        info.name,
        output.status_text(info.status.value),
        info.project,
        info.machine_group,
        output.format_ago(info.create_time, now),
        output.format_duration(duration),
        "" if info.exit_code is None else str(info.exit_code),
    ]


def _parse_statuses(values: list[str]) -> list[str]:
    """Accept `failed`, `FAILED` and `failed,killed`; a typo is bad usage (exit code 2), not an error."""
    import simplane

    statuses = []
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            try:
                statuses.append(simplane.TaskStatus.parse(name).value)
            except simplane.InvalidArgument as error:
                raise typer.BadParameter(error.message, param_hint="--status") from None
    return statuses


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(metavar="STATUS", help="Only tasks in this status, e.g. RUNNING or FAILED; repeatable."),
    ] = None,
    project: ProjectFilter = None,
    machine_group: GroupFilter = None,
    search: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Only tasks whose ID starts with, or whose name contains, TEXT.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="Show at most this many tasks.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of tasks.")] = False,
) -> None:
    """List your tasks, newest first.

    \b
    Examples:
      simplane tasks list --status running
      simplane tasks list --project demo --status failed --status killed
      simplane tasks list --search cavity
      simplane tasks list --json --limit 500 > tasks.json
    """
    from simplane.cli import output

    statuses = _parse_statuses(status or [])
    with connect(ctx) as client:
        infos = list(
            client.tasks.list(
                status=statuses or None, project=project, machine_group=machine_group, search=search, limit=limit
            )
        )
    if as_json:
        output.print_json([info.to_dict() for info in infos])
        return
    now = output.now_utc()
    output.print_table(TASK_COLUMNS, (_task_row(info, now) for info in infos))


@app.command()
def info(
    ctx: typer.Context,
    task_id: TaskId,
    as_json: Annotated[bool, typer.Option("--json", help="Print the task as JSON.")] = False,
) -> None:
    """Show a task in detail.

    Includes its status history with the time spent in each status, and its metrics.

    \b
    Examples:
      simplane tasks info t-01jf3k2m8x9q4r5s6t7v8w9y0z
      simplane tasks info t-01jf3k2m8x9q4r5s6t7v8w9y0z --json | jq .metrics
    """
    from simplane.cli import output

    with connect(ctx) as client:
        task_info = client.task(task_id).info()
    if as_json:
        output.print_json(task_info.to_dict())
        return
    output.stdout.print(_describe(task_info, output.now_utc()))


def _describe(info: simplane.TaskInfo, now: datetime) -> Text:
    from rich.text import Text

    from simplane.cli import output

    status = output.status_text(info.status.value)
    if info.exit_code is not None:
        status.append(f" (exit code {info.exit_code})")
    fields: list[tuple[str, str | Text]] = [
        ("ID", info.id),
        ("Name", info.name),
        ("Project", info.project),
        ("Owner", info.owner),
        ("Status", status),
        ("Error", info.error),
        ("Warning", info.warning),
        ("Command", shlex.join(info.command)),
        ("Group", info.machine_group),
        ("Machine", info.machine_id),
        ("Attempt", str(info.attempt)),
        ("CPUs", str(info.cpus)),
        ("Time to live", output.format_duration(info.time_to_live) if info.time_to_live else "none"),
        ("Env", " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(info.env.items()))),
        ("Inputs", info.inputs),
        ("Created", f"{output.format_time(info.create_time)} ({output.format_ago(info.create_time, now)})"),
        ("Updated", output.format_time(info.update_time)),
    ]
    text = Text()
    for label, value in fields:
        if value:
            text.append(f"{label + ':':<14}", style="bold")
            text.append(output.visible(value) if isinstance(value, str) else value)
            text.append("\n")

    text.append("History:\n", style="bold")
    for index, transition in enumerate(info.history):
        ended = info.history[index + 1].time if index + 1 < len(info.history) else None
        if transition.time is None or (ended is None and info.status.is_terminal):
            spent = ""
        elif ended is None:
            spent = output.format_duration(now - output.to_utc(transition.time)) + " so far"
        else:
            spent = output.format_duration(ended - transition.time)
        text.append("  ")
        text.append_text(output.status_text(transition.status.value))
        line = f"{' ' * (12 - len(transition.status.value))}{output.format_time(transition.time)}  {spent:<16}"
        text.append(f"{line}{output.visible(transition.detail)}".rstrip() + "\n")

    metrics = info.metrics
    text.append("Metrics:\n", style="bold")
    phases: list[tuple[str, timedelta | None]] = [
        ("queued", metrics.queued),
        ("preparing", metrics.preparing),
        ("computing", metrics.computing),
        ("finalizing", metrics.finalizing),
        ("total", metrics.total),
    ]
    for phase, duration in phases:
        if duration is not None:
            text.append(f"  {phase:<12}{output.format_duration(duration)}\n")
    text.append(f"  {'inputs':<12}{_files_summary(metrics.input_files, metrics.input_bytes)}\n")
    text.append(f"  {'outputs':<12}{_files_summary(metrics.output_files, metrics.output_bytes)}")
    return text


def _files_summary(files: int, size: int) -> str:
    from simplane.cli import output

    return f"{files} file{'' if files == 1 else 's'}, {output.format_bytes(size)}"


@app.command()
def tail(
    ctx: typer.Context,
    task_id: TaskId,
    file: Annotated[
        str | None,
        typer.Argument(metavar="FILE", help="A file in the task's working directory, instead of its output."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the task ends.")
    ] = False,
    lines: Annotated[
        int | None, typer.Option("--lines", "-n", min=1, metavar="N", help="Start with the last N lines.")
    ] = None,
    stdout_only: Annotated[bool, typer.Option("--stdout", help="Only the task's stdout.")] = False,
    stderr_only: Annotated[bool, typer.Option("--stderr", help="Only the task's stderr.")] = False,
    raw: Annotated[bool, RAW_OPTION] = False,
) -> None:
    """Print a task's output or one of its files.

    The task's stdout lines go to stdout and its stderr lines to stderr: piped, byte for byte as the task wrote
    them; on a terminal, with control sequences other than colours shown as text (--raw passes them). With
    --follow, exits with the task's exit code once it ends, as `simplane run` does.

    \b
    Examples:
      simplane tasks tail t-01jf3k2m8x9q4r5s6t7v8w9y0z -f
      simplane tasks tail t-01jf3k2m8x9q4r5s6t7v8w9y0z -n 20 --stderr
      simplane tasks tail t-01jf3k2m8x9q4r5s6t7v8w9y0z -f residuals.dat
    """
    if stdout_only and stderr_only:
        raise typer.BadParameter("give one of them, or neither for both", param_hint="--stdout/--stderr")
    if file is not None and (stdout_only or stderr_only):
        raise typer.BadParameter("a FILE has no stdout or stderr", param_hint="--stdout/--stderr")
    stream: Literal["all", "stdout", "stderr"] = "stdout" if stdout_only else "stderr" if stderr_only else "all"

    from simplane.cli import output

    with connect(ctx) as client:
        task = client.task(task_id)
        writer = output.TaskOutputWriter(raw=raw, follow=follow)
        for line in task.logs(follow=follow, stream=stream, lines=lines, file=file):
            writer.write(line)
        writer.close()
        if follow:
            raise typer.Exit(exit_code_of(task.info()))


def exit_code_of(info: simplane.TaskInfo) -> int:
    """The exit code a command following the task ends with: the task's own, 1 for a task that failed without
    one, and 128 + N for one killed by signal N, as a shell does."""
    if info.status.value == "SUCCEEDED":
        return 0
    if info.exit_code is None or info.exit_code == 0:
        return 1
    return info.exit_code if info.exit_code > 0 else 128 - info.exit_code


def report_end(info: simplane.TaskInfo) -> int:
    """Says on stderr how a followed task ended; returns `exit_code_of(info)`."""
    from simplane.cli import output

    exit_code = info.exit_code
    summary = f"task {info.id} {info.status.value}"
    if exit_code is not None:
        summary += f" with exit code {exit_code}"
    if info.metrics.total is not None:
        summary += f" after {output.format_duration(info.metrics.total)}"
    if info.error:
        summary += f": {info.error}"
    if info.status.value == "SUCCEEDED":
        output.print_note(summary)
    else:
        output.print_error(summary)
    return exit_code_of(info)


@app.command()
def kill(
    ctx: typer.Context,
    task_ids: Annotated[list[str], typer.Argument(metavar="ID", help="The IDs of the tasks to kill.")],
    grace: Annotated[
        float | None,
        typer.Option(min=0, metavar="SECONDS", show_default="10", help="Time between SIGTERM and SIGKILL."),
    ] = None,
) -> None:
    """Kill tasks.

    Sends SIGTERM to each task's processes, then SIGKILL after the grace period, and prints each killed
    ID. Every ID is tried; the command exits with 1 if any of them could not be killed.

    \b
    Examples:
      simplane tasks kill t-01jf3k2m8x9q4r5s6t7v8w9y0z
      simplane tasks list --status running --project demo | tail -n +2 | cut -f1 | xargs simplane tasks kill
    """
    import simplane
    from simplane.cli import output

    grace_period = None if grace is None else timedelta(seconds=grace)
    failed = False
    with connect(ctx) as client:
        for task_id in task_ids:
            try:
                client.task(task_id).kill(grace_period=grace_period)
            except (simplane.NotFound, simplane.FailedPrecondition, simplane.InvalidArgument) as error:
                # Only errors about this one task; the rest (server unreachable, ...) end the command.
                output.print_error(error.message)
                failed = True
                continue
            typer.echo(task_id)
    if failed:
        raise typer.Exit(1)


@app.command()
def watch(ctx: typer.Context, project: ProjectFilter = None, machine_group: GroupFilter = None) -> None:
    """Watch tasks change, live, until Ctrl-C.

    On a terminal this is a table that updates in place; piped, it prints one line per task at the start and
    one line per change after that: time, ID, status, name, project, group, exit code.

    \b
    Examples:
      simplane tasks watch --project demo
      simplane tasks watch | grep --line-buffered FAILED
    """
    from simplane.cli import output

    with connect(ctx) as client:
        events = client.tasks.watch(project=project, machine_group=machine_group)
        try:
            if output.stdout.is_terminal:
                _watch_live(events)
            else:
                _watch_lines(events)
        except KeyboardInterrupt:
            return


def _watch_live(events: Iterator[simplane.TaskEvent]) -> None:
    from rich.live import Live

    from simplane.cli import output

    tasks: dict[str, simplane.TaskInfo] = {}

    def table():  # rebuilt on each refresh, so the CREATED and DURATION columns keep moving
        now = output.now_utc()
        rows = (_task_row(tasks[task_id], now) for task_id in sorted(tasks, reverse=True))
        return output.build_table(TASK_COLUMNS, rows)

    with Live(get_renderable=table, console=output.stdout, refresh_per_second=2):
        for event in events:
            if event.task is not None:
                tasks[event.task.id] = event.task


def _watch_lines(events: Iterator[simplane.TaskEvent]) -> None:
    from simplane.cli import output

    for event in events:
        info = event.task
        if info is None:
            continue
        cells = [
            output.format_time(info.update_time),
            info.id,
            info.status.value,
            info.name,
            info.project,
            info.machine_group,
            "" if info.exit_code is None else str(info.exit_code),
        ]
        sys.stdout.write(output.plain_line(cells) + "\n")
        sys.stdout.flush()


@app.command()
def files(
    ctx: typer.Context,
    task_id: TaskId,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of files.")] = False,
) -> None:
    """List a task's files.

    While the task runs these are the files of its working directory; once it ended, its outputs.

    \b
    Examples:
      simplane tasks files t-01jf3k2m8x9q4r5s6t7v8w9y0z
    """
    from simplane.cli import output

    with connect(ctx) as client:
        task_files = client.task(task_id).list_files()
    if as_json:
        output.print_json([file.to_dict() for file in task_files])
        return
    rows = ([file.path, output.format_bytes(file.size), output.format_time(file.modify_time)] for file in task_files)
    output.print_table(("PATH", "SIZE", "MODIFIED"), rows)


@app.command()
def download(
    ctx: typer.Context,
    task_id: TaskId,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", metavar="DIR", show_default="./ID", help="Where to put the outputs."),
    ] = None,
) -> None:
    """Download a task's outputs.

    Prints the path of each file written.

    \b
    Examples:
      simplane tasks download t-01jf3k2m8x9q4r5s6t7v8w9y0z
      simplane tasks download t-01jf3k2m8x9q4r5s6t7v8w9y0z --dir results/
    """
    from simplane.cli import output

    target = directory or Path(task_id)
    with connect(ctx) as client, output.transfer_progress("downloading outputs") as progress:
        paths = client.task(task_id).download_outputs(target, progress=progress)
    for path in paths:
        typer.echo(path)
    output.print_note(f"{len(paths)} file{'' if len(paths) == 1 else 's'} in {target}")
