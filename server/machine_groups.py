"""Machine groups: the built-in "local" group of agents, and (later) groups of cloud VMs; machines join them.

A group and its machines are shown as the server sees them now: the group's stored settings, and its machines
as the agent hub holds them (connected, or away until they are back or lost) with the active tasks on them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import select
from sqlmodel import Session

from simplane._api.v1 import machine_group_pb2 as pb
from simplane.server import errors
from simplane.server.agents import AgentHub, AgentSession
from simplane.server.auth import MACHINE_ID_PREFIX, MintedKey, new_key
from simplane.server.caller import MACHINE_KEY, Caller
from simplane.server.scheduler import Scheduler
from simplane.server.store.database import Database
from simplane.server.store.models import ApiKeyRow, MachineGroupRow
from simplane.server.task_record import TaskRecord

LOCAL = "local"


@dataclass(frozen=True)
class MachineGroupView:
    """A group as it is now: its stored settings, the machines connected to it and the tasks queued for it."""

    group: MachineGroupRow
    connected_machines: int
    queued_tasks: int


@dataclass(frozen=True)
class MachineDetails:
    """What an agent reported of its machine in its last session (the current one, if it is connected)."""

    hostname: str
    slots: int
    used_slots: int
    load: float
    memory_total_bytes: int
    memory_used_bytes: int
    connect_time: float  # Unix time
    last_heartbeat_time: float  # Unix time


@dataclass(frozen=True)
class MachineView:
    """A machine as one caller may see it: its state, and the active tasks on it that the caller may see.

    `details` are for admins, and only of a machine that had a session since the server started."""

    id: str
    machine_group: str
    state: pb.MachineState.ValueType
    running_task_ids: list[str]
    details: MachineDetails | None


class MachineGroups:
    def __init__(self, database: Database, hub: AgentHub, scheduler: Scheduler) -> None:
        self._database = database
        self._hub = hub
        self._scheduler = scheduler
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

    def terminate(self, name: str) -> NoReturn:
        """Only the built-in group exists yet, and it cannot be terminated."""
        self.require(name)
        raise errors.FailedPrecondition(f"machine group {name!r} is built in and cannot be terminated")

    def view(self, name: str) -> MachineGroupView:
        group = self.require(name)
        return MachineGroupView(
            group,
            connected_machines=sum(1 for s in self._hub.sessions.values() if s.machine_group == group.name),
            queued_tasks=self._scheduler.queued(group.name),
        )

    def views(self) -> list[MachineGroupView]:
        return [self.view(name) for name in list(self._groups)]

    def machines_for(self, caller: Caller, machine_group: str, active_tasks: Iterable[TaskRecord]) -> list[MachineView]:
        """The machines of `machine_group` (every group's if empty), connected ones first, then those away.

        Admins see every machine, with its details; a user sees only the machines holding their active tasks,
        with those tasks and the machine's state, and no other detail."""
        if machine_group:
            self.require(machine_group)
        tasks: dict[str, list[str]] = {}  # machine id -> the active tasks on it the caller may see
        for task in active_tasks:
            if task.machine_id and (caller.admin or task.owner == caller.user):
                tasks.setdefault(task.machine_id, []).append(task.id)
        machines: list[tuple[str, str, pb.MachineState.ValueType, AgentSession | None]] = [
            (s.agent_id, s.machine_group, pb.MACHINE_STATE_CONNECTED, s) for s in self._hub.sessions.values()
        ]
        machines += [
            (
                absence.machine_id,
                absence.machine_group,
                pb.MACHINE_STATE_UNREACHABLE if absence.unreachable else pb.MACHINE_STATE_DISCONNECTED,
                absence.last_session,
            )
            for absence in self._hub.away.values()
        ]
        return [
            MachineView(
                id=machine_id,
                machine_group=group,
                state=state,
                running_task_ids=sorted(tasks.get(machine_id, ())),
                details=self._details(session) if caller.admin and session is not None else None,
            )
            for machine_id, group, state, session in machines
            if (not machine_group or group == machine_group) and (caller.admin or machine_id in tasks)
        ]

    def _details(self, session: AgentSession) -> MachineDetails:
        capacity = self._scheduler.machine(session.agent_id)
        return MachineDetails(
            hostname=session.hostname,
            slots=session.slots,
            used_slots=capacity.used if capacity else 0,
            load=session.load,
            memory_total_bytes=session.memory_total_bytes,
            memory_used_bytes=session.memory_used_bytes,
            connect_time=session.connected_at,
            last_heartbeat_time=time.time() - (time.monotonic() - session.last_seen),
        )

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
