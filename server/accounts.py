"""Users, their API keys, agent tokens, quotas and usage."""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from simplane._api.v1 import account_pb2
from simplane.server import errors, task_states
from simplane.server.auth import Authenticator, MintedKey, new_key
from simplane.server.caller import AGENT_KEY, USER_KEY, Caller
from simplane.server.store.database import Database
from simplane.server.store.models import ApiKeyRow, StoredFileRow, TaskRow, UserRow

_USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


class Accounts:
    def __init__(self, database: Database, authenticator: Authenticator, *, max_active_tasks: int) -> None:
        self._database = database
        self._authenticator = authenticator
        self.max_active_tasks = max_active_tasks

    # Synchronous forms run at startup, before serving; the others from RPCs, in the database thread.

    def ensure_user(self, session: Session, name: str, *, admin: bool) -> UserRow:
        user: UserRow | None = session.execute(select(UserRow).where(col(UserRow.name) == name)).scalar_one_or_none()
        if user is None:
            user = UserRow(name=name, admin=admin, created_at=time.time())
            session.add(user)
            session.flush()
        return user

    def add_key(
        self, session: Session, user: UserRow, *, kind: str = USER_KEY, machine_group: str = "", description: str = ""
    ) -> tuple[ApiKeyRow, MintedKey]:
        assert user.id is not None  # flushed: ensure_user's users are stored
        row, minted = new_key(user.id, kind=kind, machine_group=machine_group, description=description)
        session.add(row)
        return row, minted

    def key_is_valid(self, session: Session, key: str, kind: str) -> bool:
        try:
            caller = self._authenticator.check_key(session, key)
        except errors.Unauthenticated:
            return False
        return caller.kind == kind

    async def create_user(self, caller: Caller, name: str, admin: bool) -> account_pb2.CreateUserResponse:
        _require_admin(caller)
        if not _USER_NAME.fullmatch(name):
            raise errors.InvalidArgument(
                "name", "must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
            )

        def create(session: Session) -> account_pb2.CreateUserResponse:
            if session.execute(select(UserRow).where(col(UserRow.name) == name)).scalar_one_or_none() is not None:
                raise errors.AlreadyExists(f"user {name!r} already exists")
            user = self.ensure_user(session, name, admin=admin)
            row, minted = self.add_key(session, user, description="first key")
            return account_pb2.CreateUserResponse(user=_user(user), api_key=_key(row), secret=minted.secret)

        return await self._database.run(create)

    async def whoami(self, caller: Caller) -> account_pb2.WhoAmIResponse:
        user: UserRow | None = await self._database.run(
            lambda s: s.execute(select(UserRow).where(col(UserRow.name) == caller.user)).scalar_one_or_none()
        )
        if user is None:  # auth disabled and no admin yet
            return account_pb2.WhoAmIResponse(user=account_pb2.User(name=caller.user, admin=caller.admin))
        return account_pb2.WhoAmIResponse(user=_user(user), api_key_id=caller.key_id)

    async def create_key(self, caller: Caller, description: str) -> account_pb2.CreateApiKeyResponse:
        def create(session: Session) -> account_pb2.CreateApiKeyResponse:
            user = self.ensure_user(session, caller.user, admin=caller.admin)
            row, minted = self.add_key(session, user, description=description)
            return account_pb2.CreateApiKeyResponse(api_key=_key(row), secret=minted.secret)

        return await self._database.run(create)

    async def create_agent_token(self, caller: Caller, machine_group: str) -> str:
        _require_admin(caller)

        def create(session: Session) -> str:
            user = self.ensure_user(session, caller.user, admin=True)
            _row, minted = self.add_key(
                session, user, kind=AGENT_KEY, machine_group=machine_group, description=f"agents of {machine_group}"
            )
            return minted.secret

        return await self._database.run(create)

    async def list_keys(self, caller: Caller) -> list[account_pb2.ApiKey]:
        def read(session: Session) -> list[account_pb2.ApiKey]:
            rows = session.execute(
                select(ApiKeyRow)
                .join(UserRow, col(UserRow.id) == col(ApiKeyRow.user_id))
                .where(col(UserRow.name) == caller.user, col(ApiKeyRow.kind) == USER_KEY)
                .order_by(col(ApiKeyRow.created_at))
            ).scalars()
            return [_key(row) for row in rows]

        return await self._database.run(read)

    async def revoke_key(self, caller: Caller, key_id: str) -> account_pb2.ApiKey:
        def revoke(session: Session) -> account_pb2.ApiKey:
            row = session.get(ApiKeyRow, key_id)
            user = session.get(UserRow, row.user_id) if row is not None else None
            if row is None or user is None or user.name != caller.user or row.kind != USER_KEY:
                raise errors.NotFound(f"API key {key_id!r} not found")
            row.revoked = True
            session.add(row)
            return _key(row)

        key = await self._database.run(revoke)
        self._authenticator.forget(key_id)
        return key

    async def quotas(self, caller: Caller, active_tasks: int) -> list[account_pb2.Quota]:
        return [
            account_pb2.Quota(name="active_tasks", limit=self.max_active_tasks, used=active_tasks, unit="tasks"),
        ]

    async def usage(self, caller: Caller, start: float | None, end: float | None) -> account_pb2.GetUsageResponse:
        def read(session: Session) -> tuple[list[list[list[Any]]], int]:
            query = select(col(TaskRow.history)).where(col(TaskRow.owner) == caller.user)
            if start is not None:
                query = query.where(col(TaskRow.created_at) >= start)
            if end is not None:
                query = query.where(col(TaskRow.created_at) < end)
            histories = list(session.execute(query).scalars().all())
            stored = session.execute(
                select(func.coalesce(func.sum(StoredFileRow.size), 0)).where(col(StoredFileRow.owner) == caller.user)
            ).scalar()
            return histories, int(stored or 0)

        histories, stored = await self._database.run(read)
        now = time.time()
        computing = sum(task_states.phase_durations(h, now)["computing"] or 0.0 for h in histories)
        response = account_pb2.GetUsageResponse(tasks=len(histories), storage_bytes=int(stored))
        response.compute_time.FromNanoseconds(int(computing * 1e9))
        return response


def _require_admin(caller: Caller) -> None:
    if not caller.admin:
        raise errors.PermissionDenied(f"user {caller.user} is not an admin")


def _user(row: UserRow) -> account_pb2.User:
    user = account_pb2.User(name=row.name, admin=row.admin)
    user.create_time.FromNanoseconds(int(row.created_at * 1e9))
    return user


def _key(row: ApiKeyRow) -> account_pb2.ApiKey:
    key = account_pb2.ApiKey(id=row.id, description=row.description, revoked=row.revoked)
    key.create_time.FromNanoseconds(int(row.created_at * 1e9))
    if row.last_used_at:
        key.last_used_time.FromNanoseconds(int(row.last_used_at * 1e9))
    return key
