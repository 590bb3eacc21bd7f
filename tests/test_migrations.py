"""Schema migrations: a database of an older simplane upgrades by itself when `simplane up` starts (SQLite after a
backup), one of a newer simplane is refused, and the migrations' head is exactly the models' schema."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from pprint import pformat

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cluster import Cluster, ClusterError
from postgres import PostgresServer
from sqlalchemy import Engine, create_engine, inspect, text
from sqlmodel import SQLModel

from simplane._api.v1 import task_pb2
from simplane.server.store.database import sqlite_url
from simplane.server.store.migrate import alembic_config, revisions

DATA = Path(__file__).with_name("data")
OLD_TASK = "t-01jdzq8x2v3w4y5z6a7b8c9d0e"
BIG = 5_000_000_000  # over 2**32: PostgreSQL's INTEGER refuses it


@dataclass
class Site:
    """The database of one cluster, which the test fills before `simplane up` first starts on it."""

    root: Path
    url: str  # what the test writes with
    database_url: str | None  # what `up` is given: None for its default SQLite file in the data dir
    clusters: list[Cluster] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    @property
    def sqlite_file(self) -> Path:
        return self.root / "server" / "simplane.db"

    def engine(self) -> Engine:
        engine = create_engine(self.url)
        self.engines.append(engine)
        return engine

    def start(self) -> Cluster:
        if not self.clusters:
            self.clusters.append(Cluster(self.root, agents=0, database_url=self.database_url))
        return self.clusters[0].start()


@pytest.fixture
def site(tmp_path: Path, postgres: PostgresServer | None) -> Iterator[Site]:
    name = None
    if postgres is None:
        (tmp_path / "cluster" / "server").mkdir(parents=True)
        site = Site(tmp_path / "cluster", sqlite_url(str(tmp_path / "cluster" / "server" / "simplane.db")), None)
    else:
        name, url = postgres.create_database()
        site = Site(tmp_path / "cluster", url, url)
    try:
        yield site
    finally:
        for engine in site.engines:
            engine.dispose()
        for cluster in site.clusters:
            cluster.close()
            print(f"--- output of the cluster in {cluster.root}\n{cluster.output()}")
        if postgres is not None and name is not None:
            postgres.drop_database(name)


def make_old_database(engine: Engine) -> None:
    """The tables of the schema before migrations (tests/data), holding a user, a finished task and a stored file."""
    script = (DATA / f"schema-a024398.{engine.dialect.name}.sql").read_text()
    statements = "\n".join(line for line in script.splitlines() if not line.startswith("--")).split(";\n")
    history = [
        [task_pb2.TASK_STATUS_SUBMITTED, 1_700_000_000.0, ""],
        [task_pb2.TASK_STATUS_SUCCEEDED, 1_700_000_005.0, ""],
    ]
    with engine.begin() as connection:
        for statement in statements:
            if statement.strip():
                connection.execute(text(statement))
        connection.execute(text("INSERT INTO users (name, admin, created_at) VALUES ('admin', true, 1700000000.0)"))
        connection.execute(
            text(
                "INSERT INTO tasks (id, owner, name, project, machine_group, command, env, status, attempt, exit_code,"
                " error, machine_id, created_at, updated_at, time_to_live, cpus, inputs, history, input_bytes,"
                " input_files, output_bytes, output_files, revision, update_seq, stdout_size, stderr_size) VALUES"
                " (:id, 'admin', 'made before migrations', 'old', 'local', :command, :env, :status, 1, 0, '', 'm-1',"
                " 1700000000.0, 1700000005.0, 0.0, 1, '', :history, 10, 1, 20, 2, 7, 3, 2000000000, 0)"
            ),
            {
                "id": OLD_TASK,
                "command": json.dumps(["echo", "hello"]),
                "env": json.dumps({"A": "1"}),
                "status": task_pb2.TASK_STATUS_SUCCEEDED,
                "history": json.dumps(history),
            },
        )
        connection.execute(
            text("INSERT INTO task_events (revision, task_id, owner, task) VALUES (7, :id, 'admin', :task)"),
            {"id": OLD_TASK, "task": task_pb2.Task(id=OLD_TASK, revision=7).SerializeToString()},
        )
        connection.execute(
            text(
                "INSERT INTO stored_files (owner, path, size, sha256, created_at)"
                " VALUES ('admin', 'inputs/data.bin', 1234, :sha, 1700000000.0)"
            ),
            {"sha": "ab" * 32},
        )


def stored_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def test_a_database_of_the_schema_before_migrations_upgrades_when_up_starts_and_keeps_its_data(site: Site) -> None:
    engine = site.engine()
    make_old_database(engine)

    cluster = site.start()

    assert stored_revision(engine) == revisions()[-1]
    client = cluster.client()
    old = client.tasks.get(OLD_TASK).info()
    assert (old.name, old.project, old.command, old.env, old.status.value, old.exit_code) == (
        "made before migrations",
        "old",
        ["echo", "hello"],
        {"A": "1"},
        "SUCCEEDED",
        0,
    )
    assert (old.metrics.input_bytes, old.metrics.output_bytes) == (10, 20)
    assert [(f.path, f.size, f.sha256) for f in client.storage.list()] == [("inputs/data.bin", 1234, "ab" * 32)]

    # 64-bit sizes: stored, read back from the table and through the server.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE tasks SET stdout_size = :big, input_bytes = :big WHERE id = :id"), {"big": BIG, "id": OLD_TASK}
        )
        connection.execute(text("UPDATE stored_files SET size = :big"), {"big": BIG})
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT stdout_size FROM tasks WHERE id = :id"), {"id": OLD_TASK}).scalar() == BIG
        )
        assert connection.execute(text("SELECT size FROM stored_files")).scalar() == BIG
    assert client.tasks.get(OLD_TASK).info().metrics.input_bytes == BIG
    assert [f.size for f in client.storage.list()] == [BIG]

    # The upgraded database takes new tasks, after the old one.
    new = client.tasks.submit(["true"], name="made after the upgrade")
    assert [task.id for task in client.tasks.list()] == [new.id, OLD_TASK]
    assert "upgraded the database schema from revision 0001 to" in cluster.output()


def test_sqlite_is_copied_before_an_upgrade(site: Site, postgres: PostgresServer | None) -> None:
    if postgres is not None:
        pytest.skip("PostgreSQL upgrades in one transaction; its backups are the operator's (docs/migrations.md)")
    make_old_database(site.engine())

    cluster = site.start()

    backup = site.sqlite_file.with_name("simplane.db.backup-0001")
    assert f"the database as it was is in {backup}" in cluster.output()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with sqlite3.connect(backup) as copy:
        assert copy.execute("SELECT id, stdout_size FROM tasks").fetchall() == [(OLD_TASK, 2_000_000_000)]
        assert "alembic_version" not in {row[0] for row in copy.execute("SELECT name FROM sqlite_master")}
        assert (
            "size INTEGER NOT NULL"
            in copy.execute("SELECT sql FROM sqlite_master WHERE name = 'stored_files'").fetchone()[0]
        )


def test_a_new_database_starts_at_the_newest_revision_and_a_current_one_is_left_alone(site: Site) -> None:
    cluster = site.start()
    engine = site.engine()
    assert stored_revision(engine) == revisions()[-1]
    assert cluster.stop() == 0

    cluster.restart()

    assert stored_revision(engine) == revisions()[-1]
    assert "upgraded the database schema" not in cluster.output()
    assert not list(site.sqlite_file.parent.glob("*.backup-*"))


def test_a_database_of_a_newer_simplane_is_refused_with_one_line_and_left_as_it_was(site: Site) -> None:
    cluster = site.start()
    assert cluster.stop() == 0
    engine = site.engine()
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    tables = set(inspect(engine).get_table_names())

    with pytest.raises(ClusterError, match="exited with 1"):
        cluster.restart()

    errors = [line for line in cluster.output().splitlines() if line.startswith("error:")]
    assert errors == [
        "error: the database is at schema revision 9999, which this simplane does not know (its newest is "
        f"{revisions()[-1]}): a newer simplane upgraded it; run that version, or restore the backup taken before the "
        "upgrade"
    ]
    assert "Traceback" not in cluster.output()
    assert stored_revision(engine) == "9999"
    assert set(inspect(engine).get_table_names()) == tables


def test_the_migrations_head_is_the_schema_of_the_models(site: Site) -> None:
    """Fails when a model changed without a migration: add one with the command in docs/migrations.md."""
    engine = site.engine()
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == [], (
        "the models differ from the schema the migrations make; add a migration (docs/migrations.md):\n"
        + pformat(differences)
    )


def test_the_revisions_are_numbered_in_one_line_of_history() -> None:
    """The start-up check reads the newest revision from the file names: they must agree with the files."""
    scripts = ScriptDirectory.from_config(alembic_config(connection=None))
    numbered = revisions()
    assert scripts.get_heads() == [numbered[-1]]
    chain = [script.revision for script in scripts.walk_revisions()][::-1]
    assert chain == numbered
    for script in scripts.walk_revisions():
        assert Path(script.path).name.startswith(f"{script.revision}_")
