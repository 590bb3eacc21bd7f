"""How the CLI shows things: data on stdout, everything else on stderr.

On a terminal data becomes Rich tables with colour; piped, the same rows become tab-separated lines with a
header, and `--json` gives JSON. Rich is imported here, so command modules import this one inside commands
to keep `simplane --help` fast.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from simplane import LogLine

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)

Cell = str | Text
ProgressCallback = Callable[[int, int], None]

# C0 and C1 control characters and DEL; a tab is kept.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# What a task may send to the user's terminal: colours and text attributes (SGR: ESC [ digits;... m), tabs and
# carriage returns (progress bars). Any other escape sequence (titles, screen clearing, clipboard writes,
# hyperlinks, ...) or control character is shown as text instead.
_TERMINAL_ALLOWED = re.compile(r"\x1b\[[0-9;:]*m|[\t\r]")
_TERMINAL_CONTROL = re.compile(r"\x1b\[[0-9;:]*m|[\x00-\x08\x0a-\x1f\x7f-\x9f]")

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


def _escape(match: re.Match[str]) -> str:
    return repr(match[0])[1:-1]


def visible(text: str) -> str:
    """User text with its control characters written out (`\\x1b`), so it can neither move nor restyle the
    terminal, and stays on one line."""
    return _CONTROL.sub(_escape, text)


def literal(text: str, style: str = "") -> Text:
    """User text (a name, a project, a message) for Rich: shown as it is, never read as markup."""
    return Text(visible(text), style=style)


def terminal_safe(text: str) -> str:
    """A task's output line for a terminal: colours pass, every other control sequence is written out."""
    return _TERMINAL_CONTROL.sub(lambda m: m[0] if _TERMINAL_ALLOWED.fullmatch(m[0]) else _escape(m), text)


class TaskOutputWriter:
    """Writes a task's output lines: its stdout to ours, its stderr to ours.

    On a terminal, lines go through `terminal_safe` unless `raw`; into a pipe or a file, the task's bytes go out
    exactly as it wrote them. `follow` flushes after each line, so a live tail shows it at once.
    """

    def __init__(self, *, raw: bool = False, follow: bool = False) -> None:
        self._follow = follow
        self._stdout = _OutputStream(sys.stdout, raw)
        self._stderr = _OutputStream(sys.stderr, raw)

    def write(self, line: LogLine) -> None:
        target = self._stderr if line.stream == "stderr" else self._stdout
        target.write(line)
        if self._follow:
            target.flush()

    def close(self) -> None:
        self._stdout.flush()
        self._stderr.flush()


class _OutputStream:
    def __init__(self, stream: TextIO, raw: bool) -> None:
        self._text = stream
        self._safe = stream.isatty() and not raw
        if not self._safe:
            stream.flush()  # what was written as text goes first

    def write(self, line: LogLine) -> None:
        if self._safe:
            self._text.write(terminal_safe(line.text) + "\n")
        else:
            self._text.buffer.write(line.data + b"\n" if line.newline else line.data)

    def flush(self) -> None:
        (self._text if self._safe else self._text.buffer).flush()


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
        table.add_row(*(literal(cell) if isinstance(cell, str) else cell for cell in row))
    return table


def plain_line(cells: Sequence[Cell]) -> str:
    """Cells joined by tabs; tabs and newlines inside a cell become spaces so each row stays one line, and other
    control characters are written out."""
    return "\t".join(visible(str(cell).replace("\t", " ").replace("\n", " ")) for cell in cells)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_error(message: str) -> None:
    """The one format for errors: `error: <message>` on one line of stderr."""
    stderr.print(Text.assemble(("error:", "bold red"), " ", literal(message)))


def print_note(message: str) -> None:
    """A message for the person at the terminal, never for a pipe reading stdout."""
    stderr.print(literal(message, style="dim"))


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
