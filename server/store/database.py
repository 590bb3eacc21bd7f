"""The database: SQLite in the data dir by default (WAL), PostgreSQL by URL.

All access goes through one dedicated thread, so the event loop never blocks on disk or network and SQLite
sees a single writer. `run(fn, *args)` calls `fn(session, *args)` inside a transaction there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, create_engine

from simplane.server import disk_space, errors
from simplane.server.store import models  # noqa: F401  (registers the tables)

T = TypeVar("T")


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


def _normalise(url: str) -> str:
    """psycopg 3 serves plain PostgreSQL URLs too."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _make_engine(url: str) -> Engine:
    url = _normalise(url)
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            raise errors.InvalidArgument("database_url", "in-memory SQLite would lose everything on restart")
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_size=2, pool_pre_ping=True)
    raise errors.InvalidArgument("database_url", f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="simplane-db")

    def create_tables(self) -> None:
        SQLModel.metadata.create_all(self.engine)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn(session, *args) in a transaction, in the calling thread (for startup and the DB thread)."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                result = fn(session, *args)
                session.commit()
            except OperationalError as error:
                if disk_space.database_full(error):
                    raise errors.ResourceExhausted(disk_space.NO_SPACE) from error
                raise
            return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.call, fn, *args)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.engine.dispose()
