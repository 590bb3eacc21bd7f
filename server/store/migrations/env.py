"""Alembic's entry point: runs the migrations on the connection that simplane.server.store.migrate hands over."""

from typing import Any, Literal

from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from simplane.server.store import models  # noqa: F401  (the tables autogenerate compares with)


def _render_item(kind: str, item: Any, _context: Any) -> str | Literal[False]:
    """SQLModel's AutoString is a VARCHAR: new migrations say sa.String(), so they need no sqlmodel import."""
    if kind == "type" and isinstance(item, AutoString):
        return "sa.String()"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,  # SQLite alters a table by copying it; elsewhere batch operations are plain ALTERs
    compare_type=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
