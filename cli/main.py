"""The `simplane` command: the root app, which mounts one module per command or command group.

Only Typer is imported at module level: the client, grpc and Rich load inside the commands that use them,
so `simplane --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from simplane.cli import admin, agent, run, tasks, up
from simplane.cli.errors import CommandGroup

app = typer.Typer(
    cls=CommandGroup,
    name="simplane",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Added without a name, a Typer's commands become the root's own: `simplane up`, `simplane agent`, `simplane run`.
app.add_typer(up.app)
app.add_typer(agent.app)
app.add_typer(run.app)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
