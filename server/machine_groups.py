"""Machine groups: the built-in "local" group of agents, and (later) groups of cloud VMs; machines join them."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlmodel import Session

from simplane._api.v1 import machine_group_pb2 as pb
from simplane.server import errors
from simplane.server.auth import MACHINE_ID_PREFIX, MintedKey, new_key
from simplane.server.caller import MACHINE_KEY, Caller
from simplane.server.store.database import Database
from simplane.server.store.models import ApiKeyRow, MachineGroupRow

LOCAL = "local"


class MachineGroups:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._groups: dict[str, MachineGroupRow] = {}

    def load(self) -> None:
        rows = self._database.call(lambda s: list(s.execute(select(MachineGroupRow)).scalars()))
        self._groups = {row.name: row for row in rows}

    def ensure_local(self, owner: str) -> None:
        if LOCAL in self._groups:
            return
        row = MachineGroupRow(
            name=LOCAL,
            owner=owner,
            provider=pb.MACHINE_PROVIDER_LOCAL,
            state=pb.MACHINE_GROUP_STATE_ACTIVE,
            created_at=time.time(),
        )
        self._database.call(lambda s: s.add(row))
        self._groups[LOCAL] = row

    def require(self, name: str) -> MachineGroupRow:
        group = self._groups.get(name)
        if group is None or group.state == pb.MACHINE_GROUP_STATE_TERMINATED:
            raise errors.NotFound(f"machine group {name!r} not found")
        return group

    def all(self) -> list[MachineGroupRow]:
        return list(self._groups.values())

    async def join(self, token: Caller, machine_group: str, hostname: str) -> tuple[str, str]:
        """A new machine of `machine_group`, which must be the join token's: its id, chosen here, and its own
        credential (shown once).

        The credential is an API key of kind "machine" whose id is the machine's id, owned by the token's user.
        """
        if machine_group != token.machine_group:
            raise errors.PermissionDenied(
                f"this agent token joins machine group {token.machine_group!r}, not {machine_group!r}"
            )
        self.require(token.machine_group)

        def create(session: Session) -> MintedKey:
            issuer = session.get(ApiKeyRow, token.key_id)
            if issuer is None or issuer.revoked:
                raise errors.Unauthenticated("invalid or revoked API key")
            row, minted = new_key(
                issuer.user_id,
                kind=MACHINE_KEY,
                machine_group=token.machine_group,
                description=hostname,
                prefix=MACHINE_ID_PREFIX,
            )
            session.add(row)
            return minted

        minted = await self._database.run(create)
        return minted.key_id, minted.secret
