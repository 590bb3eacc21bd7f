"""The single exit path for errors: one `error: <message>` line on stderr and exit code 1.

Commands let `simplane.SimplaneError` propagate; the root command group turns it into that line, so no
command carries its own `try` block for it. Bad usage stays Typer's (exit code 2). A refused request is shown by
the fields the server named in its status details ("error: command[3]: ..."), never by reading its message.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from simplane.cli.connection import SERVER_ADDRESS
from simplane.errors import InvalidArgument, SimplaneError, Unauthenticated, Unavailable

INTERRUPTED = 130
"""Exit code after Ctrl-C, as shells report a SIGINT."""


def describe(error: SimplaneError, server_address: str | None) -> str:
    """The message a person sees for an error from the client."""
    if isinstance(error, Unavailable):
        where = f" at {server_address}" if server_address else ""
        return f"cannot reach the simplane server{where} (is `simplane up` running?)"
    if isinstance(error, Unauthenticated):
        return f"{error.message} (check SIMPLANE_API_KEY, or the config file `simplane up` writes)"
    if isinstance(error, InvalidArgument) and error.violations:
        return "; ".join(f"{violation.field}: {violation.description}" for violation in error.violations)
    return error.message


class CommandGroup(TyperGroup):
    """The root group: every command runs inside its `invoke`, so its errors all end up here."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # Typer passes its groups a typer.Context
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()
            return result
        except SimplaneError as error:
            from simplane.cli import output

            output.print_error(describe(error, ctx.meta.get(SERVER_ADDRESS)))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(INTERRUPTED) from None
        except BrokenPipeError:
            # The reader of stdout went away (`simplane tasks list | head -1`): stop quietly and keep the
            # interpreter's final flush from failing again on the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
