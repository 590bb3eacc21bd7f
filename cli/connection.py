"""The client a command talks to the server with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import simplane

SERVER_ADDRESS = "simplane.server_address"
"""Key in the click context's shared `meta` under which `connect` leaves the address it used."""


@contextmanager
def connect(ctx: typer.Context) -> Iterator[simplane.Client]:
    """Open the client configured by SIMPLANE_ADDRESS, SIMPLANE_API_KEY or the config file.

    The address is left in `ctx.meta`, so a connection failure can name the server it could not reach.
    """
    import simplane

    with simplane.Client() as client:
        ctx.meta[SERVER_ADDRESS] = client.address
        yield client
