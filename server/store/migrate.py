"""Brings the database to the schema of this code when the server starts, with the Alembic migrations in
migrations/versions (numbered 0001, 0002, ... in one line of history).

- an empty database is created at the newest revision (the models' tables, stamped);
- a database made before migrations existed (tables, no alembic_version) is taken as revision 0001, then upgraded;
- an older revision is upgraded, after a copy of a SQLite file to `<file>.backup-<old revision>`;
- a revision this code does not know (a newer simplane wrote it) stops the start, before anything is touched.

The check costs one query: Alembic (a fifth of a second to import) is loaded only when something must change.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, create_engine, inspect, select
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from simplane.server import errors
from simplane.server.store import models  # noqa: F401  (registers the tables)

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

# Resolved: in a strict editable install this module is a link, and a new migration must be written beside the
# real files, not into the link tree (docs/development.md).
MIGRATIONS = Path(__file__).resolve().with_name("migrations")
BASELINE = "0001"  # the schema of the releases before migrations: a database without alembic_version is this

# Alembic's own bookkeeping table, as `alembic stamp` makes it.
_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def revisions() -> list[str]:
    """Every revision this code has, oldest first, from the file names (0002_what_changed.py)."""
    return sorted(path.name[:4] for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def bring_to_head(engine: Engine) -> None:
    """Creates, stamps or upgrades the schema so that it is the models'; a no-op when it already is."""
    known = revisions()
    head = known[-1]
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        current = connection.execute(select(_VERSION.c.version_num)).scalar() if _VERSION.name in tables else None
    if current == head:
        return
    if current is not None and current not in known:
        raise errors.FailedPrecondition(
            f"the database is at schema revision {current}, which this simplane does not know (its newest is "
            f"{head}): a newer simplane upgraded it; run that version, or restore the backup taken before the upgrade"
        )
    if current is None and not tables & set(SQLModel.metadata.tables):
        with engine.begin() as connection:
            SQLModel.metadata.create_all(connection)
            _VERSION.create(connection)
            connection.execute(_VERSION.insert().values(version_num=head))
        return
    _upgrade(engine, current or BASELINE, head, stamp=current is None)


def _upgrade(engine: Engine, current: str, head: str, *, stamp: bool) -> None:
    from alembic import command

    backup = _backup_sqlite(Path(engine.url.database or ""), current) if engine.dialect.name == "sqlite" else None
    with engine.begin() as connection:
        config = alembic_config(connection)
        if stamp:
            command.stamp(config, current)
        command.upgrade(config, "head")
    log.warning(
        "upgraded the database schema from revision %s to %s%s",
        current,
        head,
        f"; the database as it was is in {backup}" if backup else "",
    )


def _backup_sqlite(path: Path, revision: str) -> Path:
    """A consistent copy of the SQLite file (its WAL included), 0600, never over an earlier copy."""
    base = f"{path}.backup-{revision}"
    for target in itertools.chain([base], (f"{base}.{number}" for number in itertools.count(2))):
        with contextlib.suppress(FileExistsError):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
    with contextlib.closing(sqlite3.connect(path)) as source, contextlib.closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return Path(target)


def alembic_config(connection: Connection | None) -> Config:
    """Alembic's configuration for our migrations, run on `connection` (migrations/env.py picks it up); None
    to only read the migration scripts."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


def new_revision(message: str) -> Path:
    """Writes the next migration, autogenerated from the difference between the newest revision and the models."""
    from alembic import command

    number = f"{int(revisions()[-1]) + 1:04d}"
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/head.db")
        with engine.begin() as connection:
            config = alembic_config(connection)
            command.upgrade(config, "head")
            script = command.revision(config, message, autogenerate=True, rev_id=number)
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


if __name__ == "__main__":
    # python -m simplane.server.store.migrate "what changed": see docs/migrations.md.
    if len(sys.argv) != 2:
        sys.exit('usage: python -m simplane.server.store.migrate "what changed"')
    print(new_revision(sys.argv[1]))
