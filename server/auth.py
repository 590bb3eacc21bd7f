"""API keys, join tokens and machine credentials: minting them, and checking a key to name its caller.

A key reads `sp_<id>_<secret>`; the server stores only sha256(secret). Checked keys are cached in memory so
that an RPC costs one dict lookup; revoking a key drops it from the cache. A machine credential's id is the
machine's id, so the id a machine is known by proves nothing without the secret. How a key arrives (gRPC
metadata) is the servicers' concern (servicers/authorization.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlmodel import Session

from simplane.server import errors
from simplane.server.caller import USER_KEY, Caller
from simplane.server.store.database import Database
from simplane.server.store.models import ApiKeyRow, UserRow

MACHINE_ID_PREFIX = "m-"


@dataclass(frozen=True)
class MintedKey:
    key_id: str
    secret: str  # the whole `sp_<id>_<secret>` string, shown once


def mint_key(prefix: str = "") -> tuple[MintedKey, str]:
    """A new key and the hash to store for it; `prefix` starts its id (machine ids start with "m-")."""
    key_id = prefix + secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return MintedKey(key_id, f"sp_{key_id}_{secret}"), _hash(secret)


def new_key(
    user_id: int, *, kind: str = USER_KEY, machine_group: str = "", description: str = "", prefix: str = ""
) -> tuple[ApiKeyRow, MintedKey]:
    """The row of a new key of the user's (to add to a session) and the key itself, to show once."""
    minted, secret_hash = mint_key(prefix)
    row = ApiKeyRow(
        id=minted.key_id,
        user_id=user_id,
        secret_hash=secret_hash,
        kind=kind,
        machine_group=machine_group,
        description=description,
        created_at=time.time(),
    )
    return row, minted


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(key: str) -> tuple[str, str]:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "sp" or not parts[1] or not parts[2]:
        raise errors.Unauthenticated("malformed API key")
    return parts[1], parts[2]


class Authenticator:
    def __init__(self, database: Database, *, disabled: bool = False, local_admin: str = "admin") -> None:
        self._database = database
        self._disabled = disabled
        self._local_admin = local_admin
        self._cache: dict[str, Caller] = {}

    async def caller(self, key: str | None) -> Caller:
        """The caller holding `key` (None: no key was sent)."""
        if key is None:
            if self._disabled:
                return Caller(user=self._local_admin, admin=True, key_id="")
            raise errors.Unauthenticated("missing API key: send the header 'authorization: Bearer <key>'")
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        caller = await self._database.run(self.check_key, key)
        self._cache[key] = caller
        return caller

    def check_key(self, session: Session, key: str) -> Caller:
        key_id, secret = _split(key)
        row = session.get(ApiKeyRow, key_id)
        if row is None or row.revoked or not hmac.compare_digest(row.secret_hash, _hash(secret)):
            raise errors.Unauthenticated("invalid or revoked API key")
        user = session.get(UserRow, row.user_id)
        if user is None:
            raise errors.Unauthenticated("invalid or revoked API key")
        row.last_used_at = time.time()
        session.add(row)
        return Caller(user=user.name, admin=user.admin, key_id=row.id, kind=row.kind, machine_group=row.machine_group)

    def forget(self, key_id: str) -> None:
        """Drops a revoked key from the cache."""
        for key in [k for k, c in self._cache.items() if c.key_id == key_id]:
            del self._cache[key]
