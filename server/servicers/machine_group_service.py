"""MachineGroupService: the groups and their machines as the server sees them now."""

from __future__ import annotations

from simplane._api.v1 import machine_group_pb2 as pb
from simplane._api.v1 import machine_group_pb2_grpc
from simplane.server import errors
from simplane.server.accounts import Accounts
from simplane.server.agents import AgentHub
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
            provider=row.provider,
            state=row.state,
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

    def _owns(self, caller: Caller, task_id: str) -> bool:
        task = self._tasks.active.get(task_id)
        return task is not None and task.owner == caller.user

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
        if request.machine_group:
            self._groups.require(request.machine_group)
        response = pb.ListMachinesResponse()
        for session in self._hub.sessions.values():
            if request.machine_group and session.machine_group != request.machine_group:
                continue
            capacity = self._scheduler.machine(session.agent_id)
            machine = response.machines.add(
                id=session.agent_id,
                machine_group=session.machine_group,
                hostname=session.hostname,
                state=pb.MACHINE_STATE_CONNECTED,
                slots=session.slots,
                used_slots=capacity.used if capacity else 0,
                running_task_ids=sorted(
                    task_id for task_id in (capacity.task_ids if capacity else ()) if self._owns(caller, task_id)
                ),
                load=session.load,
                memory_total_bytes=session.memory_total_bytes,
                memory_used_bytes=session.memory_used_bytes,
            )
            machine.connect_time.FromNanoseconds(int(session.connected_at * 1e9))
        return response

    @unary
    async def CreateAgentToken(self, request, context, caller: Caller):
        group = request.machine_group or "local"
        self._groups.require(group)
        return pb.CreateAgentTokenResponse(token=await self._accounts.create_agent_token(caller, group))
