"""AgentService: machines joining, the agents' stream (assignments down; updates and output up), inputs and
outputs. A join token can only join; each other call takes the machine's own credential and reaches only the tasks
assigned to that machine. The stream's messages are agent_protocol.py's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from simplane._api.v1 import agent_pb2, agent_pb2_grpc, storage_pb2
from simplane._protocol.task_outputs import outputs_prefix
from simplane.server.agent_protocol import AgentProtocol
from simplane.server.agents import AgentHub
from simplane.server.auth import Authenticator
from simplane.server.caller import AGENT_KEY, MACHINE_KEY, Caller
from simplane.server.file_store import FileStore
from simplane.server.machine_groups import MachineGroups
from simplane.server.servicers.authorization import AuthorizedServicer, ServicerContext, require_kind
from simplane.server.status import streaming, unary
from simplane.server.tasks import TaskRegistry


class AgentService(AuthorizedServicer, agent_pb2_grpc.AgentServiceServicer):
    key_kinds = frozenset({AGENT_KEY, MACHINE_KEY})

    def __init__(
        self,
        authenticator: Authenticator,
        tasks: TaskRegistry,
        hub: AgentHub,
        files: FileStore,
        groups: MachineGroups,
    ) -> None:
        super().__init__(authenticator)
        self._tasks = tasks
        self._protocol = AgentProtocol(tasks, hub, answered=grpc.aio.AbortError)
        self._files = files
        self._groups = groups

    @unary
    async def Join(
        self, request: agent_pb2.JoinRequest, context: ServicerContext, caller: Caller
    ) -> agent_pb2.JoinResponse:
        require_kind(caller, AGENT_KEY)
        machine_id, credential = await self._groups.join(caller, request.machine_group, request.hostname)
        return agent_pb2.JoinResponse(machine_id=machine_id, credential=credential)

    @streaming
    async def Connect(
        self, request_iterator: AsyncIterator[agent_pb2.ConnectRequest], context: ServicerContext, caller: Caller
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        require_kind(caller, MACHINE_KEY)
        async for response in self._protocol.converse(caller, request_iterator):
            yield response

    @streaming
    async def DownloadInputs(
        self, request: agent_pb2.DownloadInputsRequest, context: ServicerContext, caller: Caller
    ) -> AsyncIterator[agent_pb2.DownloadInputsResponse]:
        require_kind(caller, MACHINE_KEY)
        task = self._tasks.assigned_task(caller.machine_id, request.task_id)
        if not task.inputs:
            return
        files = await self._files.list(task.owner, task.inputs)
        async for chunk in self._files.chunks(task.owner, files, task.inputs):
            yield agent_pb2.DownloadInputsResponse(chunk=chunk)

    @unary
    async def UploadOutputs(
        self, request_iterator: AsyncIterator[agent_pb2.UploadOutputsRequest], context: ServicerContext, caller: Caller
    ) -> agent_pb2.UploadOutputsResponse:
        require_kind(caller, MACHINE_KEY)
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            return agent_pb2.UploadOutputsResponse()
        task = self._tasks.assigned_task(caller.machine_id, first.task_id)

        async def chunks() -> AsyncIterator[storage_pb2.FileChunk]:
            if first.HasField("chunk"):
                yield first.chunk
            async for message in messages:
                yield message.chunk

        files, size = await self._files.receive(task.owner, outputs_prefix(task.id), chunks())
        return agent_pb2.UploadOutputsResponse(files=files, bytes=size)
