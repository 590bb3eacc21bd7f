"""`simplane up`: the server and the local machine group's agents, in one command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


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
