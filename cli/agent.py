"""`simplane agent`: an agent that runs the tasks of a machine group on this host."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


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
