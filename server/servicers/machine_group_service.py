"""MachineGroupService: the groups and their machines as the server sees them now."""

from __future__ import annotations

from simplane._api.v1 import machine_group_pb2 as pb
from simplane._api.v1 import machine_group_pb2_grpc
from simplane.server import errors
from simplane.server.accounts import Accounts
from simplane.server.auth import Authenticator
from simplane.server.caller import Caller
from simplane.server.machine_groups import LOCAL, MachineGroups, MachineGroupView, MachineView
from simplane.server.servicers.authorization import AuthorizedServicer, ServicerContext
from simplane.server.status import unary
from simplane.server.tasks import TaskRegistry


class MachineGroupService(AuthorizedServicer, machine_group_pb2_grpc.MachineGroupServiceServicer):
    def __init__(
        self,
        authenticator: Authenticator,
        groups: MachineGroups,
        accounts: Accounts,
        tasks: TaskRegistry,
    ) -> None:
        super().__init__(authenticator)
        self._tasks = tasks
        self._groups = groups
        self._accounts = accounts

    @unary
    async def CreateMachineGroup(
        self, request: pb.CreateMachineGroupRequest, context: ServicerContext, caller: Caller
    ) -> pb.CreateMachineGroupResponse:
        raise errors.FailedPrecondition("creating machine groups is not available yet: use the 'local' group")

    @unary
    async def GetMachineGroup(
        self, request: pb.GetMachineGroupRequest, context: ServicerContext, caller: Caller
    ) -> pb.GetMachineGroupResponse:
        return pb.GetMachineGroupResponse(machine_group=_group(self._groups.view(request.name)))

    @unary
    async def ListMachineGroups(
        self, request: pb.ListMachineGroupsRequest, context: ServicerContext, caller: Caller
    ) -> pb.ListMachineGroupsResponse:
        return pb.ListMachineGroupsResponse(machine_groups=[_group(view) for view in self._groups.views()])

    @unary
    async def TerminateMachineGroup(
        self, request: pb.TerminateMachineGroupRequest, context: ServicerContext, caller: Caller
    ) -> pb.TerminateMachineGroupResponse:
        self._groups.terminate(request.name)

    @unary
    async def ListMachines(
        self, request: pb.ListMachinesRequest, context: ServicerContext, caller: Caller
    ) -> pb.ListMachinesResponse:
        machines = self._groups.machines_for(caller, request.machine_group, self._tasks.active.values())
        return pb.ListMachinesResponse(machines=[_machine(machine) for machine in machines])

    @unary
    async def CreateAgentToken(
        self, request: pb.CreateAgentTokenRequest, context: ServicerContext, caller: Caller
    ) -> pb.CreateAgentTokenResponse:
        group = request.machine_group or LOCAL
        self._groups.require(group)
        return pb.CreateAgentTokenResponse(token=await self._accounts.create_agent_token(caller, group))


def _group(view: MachineGroupView) -> pb.MachineGroup:
    row = view.group
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
        connected_machines=view.connected_machines,
        queued_tasks=view.queued_tasks,
    )
    group.create_time.FromNanoseconds(int(row.created_at * 1e9))
    return group


def _machine(view: MachineView) -> pb.Machine:
    machine = pb.Machine(
        id=view.id, machine_group=view.machine_group, state=view.state, running_task_ids=view.running_task_ids
    )
    details = view.details
    if details is not None:
        machine.hostname = details.hostname
        machine.slots = details.slots
        machine.used_slots = details.used_slots
        machine.load = details.load
        machine.memory_total_bytes = details.memory_total_bytes
        machine.memory_used_bytes = details.memory_used_bytes
        machine.connect_time.FromNanoseconds(int(details.connect_time * 1e9))
        machine.last_heartbeat_time.FromNanoseconds(int(details.last_heartbeat_time * 1e9))
    return machine
