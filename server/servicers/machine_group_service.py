"""MachineGroupService: the groups and their machines as the server sees them now."""

from __future__ import annotations

import time

from simplane._api.v1 import machine_group_pb2 as pb
from simplane._api.v1 import machine_group_pb2_grpc
from simplane.server import errors
from simplane.server.accounts import Accounts
from simplane.server.agents import AgentHub, AgentSession
from simplane.server.auth import Authenticator, Caller
from simplane.server.machine_groups import MachineGroups
from simplane.server.scheduler import Scheduler
from simplane.server.servicers.authorization import AuthorizedServicer
from simplane.server.status import unary
from simplane.server.tasks import TaskRegistry


class MachineGroupService(AuthorizedServicer, machine_group_pb2_grpc.MachineGroupServiceServicer):
    def __init__(
        self,
        authenticator: Authenticator,
        groups: MachineGroups,
        hub: AgentHub,
        scheduler: Scheduler,
        accounts: Accounts,
        tasks: TaskRegistry,
    ) -> None:
        super().__init__(authenticator)
        self._tasks = tasks
        self._groups = groups
        self._hub = hub
        self._scheduler = scheduler
        self._accounts = accounts

    def _group(self, name: str) -> pb.MachineGroup:
        row = self._groups.require(name)
        group = pb.MachineGroup(
            name=row.name,
            provider=pb.MachineProvider.ValueType(row.provider),
            state=pb.MachineGroupState.ValueType(row.state),
            machine_type=row.machine_type,
            zone=row.zone,
            machines=row.machines,
            spot=row.spot,
            disk_size_gb=row.disk_size_gb,
            owner=row.owner,
            connected_machines=sum(1 for s in self._hub.sessions.values() if s.machine_group == row.name),
            queued_tasks=self._scheduler.queued(row.name),
        )
        group.create_time.FromNanoseconds(int(row.created_at * 1e9))
        return group

    @unary
    async def CreateMachineGroup(self, request, context, caller: Caller):
        raise errors.FailedPrecondition("creating machine groups is not available yet: use the 'local' group")

    @unary
    async def GetMachineGroup(self, request, context, caller: Caller):
        return pb.GetMachineGroupResponse(machine_group=self._group(request.name))

    @unary
    async def ListMachineGroups(self, request, context, caller: Caller):
        return pb.ListMachineGroupsResponse(machine_groups=[self._group(row.name) for row in self._groups.all()])

    @unary
    async def TerminateMachineGroup(self, request, context, caller: Caller):
        self._groups.require(request.name)
        raise errors.FailedPrecondition(f"machine group {request.name!r} is built in and cannot be terminated")

    @unary
    async def ListMachines(self, request, context, caller: Caller):
        """Admins see every machine, connected or away; a user sees only the machines holding their active tasks,
        with those tasks and the machine's state, and no other detail."""
        if request.machine_group:
            self._groups.require(request.machine_group)
        tasks: dict[str, list[str]] = {}  # machine id -> the active tasks on it the caller may see
        for task in self._tasks.active.values():
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
        response = pb.ListMachinesResponse()
        for machine_id, machine_group, state, session in machines:
            if request.machine_group and machine_group != request.machine_group:
                continue
            if not caller.admin and machine_id not in tasks:
                continue
            shown = response.machines.add(
                id=machine_id,
                machine_group=machine_group,
                state=state,
                running_task_ids=sorted(tasks.get(machine_id, ())),
            )
            if caller.admin and session is not None:
                self._add_details(shown, session)
        return response

    def _add_details(self, shown: pb.Machine, session: AgentSession) -> None:
        capacity = self._scheduler.machine(session.agent_id)
        shown.hostname = session.hostname
        shown.slots = session.slots
        shown.used_slots = capacity.used if capacity else 0
        shown.load = session.load
        shown.memory_total_bytes = session.memory_total_bytes
        shown.memory_used_bytes = session.memory_used_bytes
        shown.connect_time.FromNanoseconds(int(session.connected_at * 1e9))
        shown.last_heartbeat_time.FromNanoseconds(int((time.time() - (time.monotonic() - session.last_seen)) * 1e9))

    @unary
    async def CreateAgentToken(self, request, context, caller: Caller):
        group = request.machine_group or "local"
        self._groups.require(group)
        return pb.CreateAgentTokenResponse(token=await self._accounts.create_agent_token(caller, group))
