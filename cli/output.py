"""How the CLI shows things: data on stdout, everything else on stderr.

On a terminal data becomes Rich tables with colour; piped, the same rows become tab-separated lines with a
header, and `--json` gives JSON. Rich is imported here, so command modules import this one inside commands
to keep `simplane --help` fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

Cell = str | Text
ProgressCallback = Callable[[int, int], None]

_STATUS_STYLES = {
    "SUBMITTED": "yellow",
    "QUEUED": "yellow",
    "PREPARING": "cyan",
    "RUNNING": "bold cyan",
    "FINALIZING": "cyan",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "KILLED": "magenta",
    "TIMED_OUT": "red",
    "LOST": "red",
}


def status_text(status: str) -> Text:
    """A task status in its colour (the colour is dropped when the output is not a terminal)."""
    return Text(status, style=_STATUS_STYLES.get(status, ""))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """Rows as a Rich table on a terminal, else as tab-separated lines under a header."""
    if stdout.is_terminal:
        stdout.print(build_table(columns, rows))
        return
    write = sys.stdout.write
    write("\t".join(columns) + "\n")
    for row in rows:
        write(plain_line(row) + "\n")


def build_table(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for index, column in enumerate(columns):
        # The first column identifies the row (an ID, a path): never wrap it, so it can be copied whole.
        table.add_column(column, no_wrap=index == 0, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def plain_line(cells: Sequence[Cell]) -> str:
    """Cells joined by tabs; tabs and newlines inside a cell become spaces so each row stays one line."""
    return "\t".join(str(cell).replace("\t", " ").replace("\n", " ") for cell in cells)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_error(message: str) -> None:
    """The one format for errors: `error: <message>` on one line of stderr."""
    stderr.print(Text.assemble(("error:", "bold red"), " ", message))


def print_note(message: str) -> None:
    """A message for the person at the terminal, never for a pipe reading stdout."""
    stderr.print(Text(message, style="dim"))


@contextmanager
def transfer_progress(description: str) -> Iterator[ProgressCallback | None]:
    """A byte progress bar on stderr while the block runs, or None when stderr is not a terminal."""
    if not stderr.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as progress:
        bar = progress.add_task(description, total=None)
        yield lambda done, total: progress.update(bar, completed=done, total=total)


def to_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def format_time(moment: datetime | None) -> str:
    """ISO-8601 in UTC, to the millisecond."""
    if moment is None:
        return ""
    return to_utc(moment).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_ago(moment: datetime | None, now: datetime) -> str:
    """How long before `now`: `12s ago`, `5m ago`, `3h ago`, `2d ago`."""
    if moment is None:
        return ""
    seconds = max(0, int((now - to_utc(moment)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def format_duration(duration: timedelta | None) -> str:
    """Compact and fixed-precision: `0.42s`, `12.3s`, `4m07s`, `2h05m`, `3d04h`."""
    if duration is None:
        return ""
    seconds = duration.total_seconds()
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def format_bytes(size: int) -> str:
    """Decimal units, as disks and networks count: `512 B`, `1.5 kB`, `20.0 MB`."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 999.95:  # so that rounding never shows 1000.0
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def now_utc() -> datetime:
    return datetime.now(UTC)
