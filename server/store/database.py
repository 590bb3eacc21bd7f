"""The database: SQLite in the data dir by default (WAL), PostgreSQL by URL.

All access goes through one dedicated thread, so the event loop never blocks on disk or network and SQLite
sees a single writer. `run(fn, *args)` calls `fn(session, *args)` inside a transaction there, and turns the
database's failures into domain errors: a database that cannot be reached is Unavailable (the caller may
retry), a write it refuses is FailedPrecondition. The thread is a daemon, so a hung database never keeps the
process from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from simplane.server import errors
from simplane.server.store import models  # noqa: F401  (registers the tables)
from simplane.server.store.migrate import bring_to_head

T = TypeVar("T")
log = logging.getLogger(__name__)

# How long close() waits for the statement in flight; past it the thread is left behind (it is a daemon).
CLOSE_TIMEOUT = 3.0

_Job = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


def _normalise(url: str) -> str:
    """psycopg 3 serves plain PostgreSQL URLs too."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


_POSTGRESQL_CONNECT = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


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
        # A server that stops answering (a network cut drops packets rather than refusing) must not hold the one
        # database thread for minutes: connecting gives up after a few seconds, and TCP keepalives notice a dead
        # connection within about half a minute, so callers get UNAVAILABLE instead of waiting.
        return create_engine(url, pool_size=2, pool_pre_ping=True, connect_args=_POSTGRESQL_CONNECT)
    raise errors.InvalidArgument("database_url", f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="simplane-db", daemon=True)
        self._thread.start()

    def migrate(self) -> None:
        """Brings the schema to this code's: creates, upgrades (SQLite: after a backup) or refuses (see migrate.py)."""
        bring_to_head(self.engine)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn(session, *args) in a transaction, in the calling thread (for startup and the DB thread)."""
        with Session(self.engine, expire_on_commit=False) as session:
            result = fn(session, *args)
            session.commit()
            return result

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn(session, *args) in a transaction on the database thread; raises Unavailable while the database
        cannot be reached and FailedPrecondition when it refuses the statement."""
        job: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((job, fn, args))
        try:
            return await asyncio.wrap_future(job)
        except exc.SQLAlchemyError as error:
            raise domain_error(error) from error

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = self.call(fn, *args)
            except BaseException as error:  # handed to the awaiting coroutine, which raises it
                future.set_exception(error)
            else:
                future.set_result(result)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Finishes the queued work within `timeout` seconds; a database that hangs longer is abandoned."""
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the database did not answer within %.0f s; closing without it", timeout)
            return
        self.engine.dispose()


_AWAY = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)


def domain_error(error: exc.SQLAlchemyError) -> errors.DomainError:
    """The domain error for a database failure: away (retry later) or a refusal of this statement. SQLite's
    "database or disk is full" counts as away: the change is kept and retried until space returns."""
    if isinstance(error, _AWAY) or getattr(error, "connection_invalidated", False):
        return errors.Unavailable(f"the database is unreachable: {_first_line(error)}")
    return errors.FailedPrecondition(f"the database refused the change: {_first_line(error)}")


def _first_line(error: exc.SQLAlchemyError) -> str:
    cause = getattr(error, "orig", None) or error
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
