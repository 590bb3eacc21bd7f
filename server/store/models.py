"""Tables. Times are Unix seconds (float) so SQLite and PostgreSQL store them alike; sizes, offsets and revisions
are 64-bit (BIGINT), since PostgreSQL's INTEGER stops at 2 GiB. Every change here ships as a migration
(server/store/migrations)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Table
from sqlmodel import Field, SQLModel


class UserRow(SQLModel, table=True):
    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    admin: bool = False
    created_at: float


class ApiKeyRow(SQLModel, table=True):
    """A user's API key or a machine group's agent token (kind "agent")."""

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True)
    user_id: int = Field(index=True)
    secret_hash: str
    kind: str = "user"
    machine_group: str = ""
    description: str = ""
    created_at: float
    last_used_at: float | None = None
    revoked: bool = False


class MachineGroupRow(SQLModel, table=True):
    __tablename__ = "machine_groups"
    name: str = Field(primary_key=True)
    owner: str
    provider: int
    state: int
    machine_type: str = ""
    zone: str = ""
    machines: int = 0
    spot: bool = False
    disk_size_gb: int = 0
    created_at: float


class TaskRow(SQLModel, table=True):
    """The current state of a task; its past is in task_events."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_owner_id", "owner", "id"),
        Index("ix_tasks_owner_request_id", "owner", "request_id", unique=True),
    )
    id: str = Field(primary_key=True)
    owner: str
    name: str = ""
    project: str = Field(default="", index=True)
    machine_group: str = Field(index=True)
    command: list[str] = Field(sa_column=Column(JSON, nullable=False))
    env: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    status: int = Field(index=True)
    attempt: int = 1
    exit_code: int | None = None
    error: str = ""
    machine_id: str = ""
    created_at: float
    updated_at: float
    time_to_live: float = 0.0
    cpus: int = 1
    inputs: str = ""
    history: list[list] = Field(sa_column=Column(JSON, nullable=False))
    input_bytes: int = Field(default=0, sa_type=BigInteger)
    input_files: int = Field(default=0, sa_type=BigInteger)
    output_bytes: int = Field(default=0, sa_type=BigInteger)
    output_files: int = Field(default=0, sa_type=BigInteger)
    revision: int = Field(default=0, sa_type=BigInteger)
    update_seq: int = Field(default=0, sa_type=BigInteger)
    stdout_size: int = Field(default=-1, sa_type=BigInteger)
    stderr_size: int = Field(default=-1, sa_type=BigInteger)
    # The client's idempotency key for SubmitTask (NULL when it sent none); unique per owner.
    request_id: str | None = None


class TaskEventRow(SQLModel, table=True):
    """One change of one task, with the task's state after it: WatchTasks replays these by revision."""

    __tablename__ = "task_events"
    revision: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    task_id: str
    owner: str = Field(index=True)
    task: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class StoredFileRow(SQLModel, table=True):
    __tablename__ = "stored_files"
    owner: str = Field(primary_key=True)
    path: str = Field(primary_key=True)
    size: int = Field(sa_type=BigInteger)
    sha256: str
    created_at: float
    # The permission bits the file was uploaded with, given back on download; on disk every stored file is 0600.
    mode: int = Field(default=0o644, sa_column_kwargs={"server_default": "420"})


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy table of a `table=True` model, for bulk statements (executemany) on it."""
    table: Table = model.__table__  # type: ignore[attr-defined]  # set by SQLAlchemy; SQLModel's types omit it
    return table
