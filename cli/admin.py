"""`simplane admin ...`: join tokens for agents and users with API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from simplane.cli.connection import connect

app = typer.Typer(
    help="Administer the server: agent join tokens and users.", no_args_is_help=True, rich_markup_mode=None
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(users_app, name="users")


@app.command("agent-token")
def agent_token(
    ctx: typer.Context,
    machine_group: Annotated[
        str, typer.Option(metavar="GROUP", help="The machine group the agent will serve.")
    ] = "local",
) -> None:
    """Print a token that lets an agent join a machine group.

    \b
    Examples:
      export SIMPLANE_AGENT_TOKEN=$(simplane admin agent-token --machine-group lab)
      simplane agent --server 10.0.0.5:50051 --machine-group lab
    """
    with connect(ctx) as client:
        token = client.machine_groups.create_agent_token(machine_group=machine_group)
    typer.echo(token)


@users_app.command("create")
def create_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new user's name.")],
    admin: Annotated[bool, typer.Option("--admin", help="Let the user administer the server.")] = False,
) -> None:
    """Create a user and print their API key.

    The key is shown only this once.

    \b
    Examples:
      simplane admin users create alice
      simplane admin users create bob --admin > bob.key
    """
    from simplane.cli import output

    with connect(ctx) as client:
        user, api_key = client.account.create_user(name, admin=admin)
    typer.echo(api_key)
    output.print_note(
        f"created {'admin ' if user.admin else ''}user {user.name}; "
        "they use the key above as SIMPLANE_API_KEY (it cannot be shown again)"
    )
