"""TaskService: decode, call the task core, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator

from simplane._api.v1 import task_pb2, task_pb2_grpc
from simplane.server.auth import Authenticator
from simplane.server.caller import Caller
from simplane.server.log_tail import LogTail
from simplane.server.servicers.authorization import AuthorizedServicer, ServicerContext
from simplane.server.status import streaming, unary
from simplane.server.task_files import TaskFiles
from simplane.server.task_watch import TaskWatch
from simplane.server.tasks import TaskRegistry


class TaskService(AuthorizedServicer, task_pb2_grpc.TaskServiceServicer):
    def __init__(
        self, authenticator: Authenticator, tasks: TaskRegistry, watch: TaskWatch, tail: LogTail, files: TaskFiles
    ) -> None:
        super().__init__(authenticator)
        self._tasks = tasks
        self._watch = watch
        self._tail = tail
        self._files = files

    @unary
    async def SubmitTask(
        self, request: task_pb2.SubmitTaskRequest, context: ServicerContext, caller: Caller
    ) -> task_pb2.SubmitTaskResponse:
        return task_pb2.SubmitTaskResponse(task=await self._tasks.submit(caller, request))

    @unary
    async def GetTask(
        self, request: task_pb2.GetTaskRequest, context: ServicerContext, caller: Caller
    ) -> task_pb2.GetTaskResponse:
        task = await self._tasks.get(caller, request.task_id)
        return task_pb2.GetTaskResponse(task=task.to_proto())

    @unary
    async def ListTasks(
        self, request: task_pb2.ListTasksRequest, context: ServicerContext, caller: Caller
    ) -> task_pb2.ListTasksResponse:
        return await self._tasks.list(caller, request)

    @unary
    async def KillTask(
        self, request: task_pb2.KillTaskRequest, context: ServicerContext, caller: Caller
    ) -> task_pb2.KillTaskResponse:
        grace = request.grace_period.ToNanoseconds() / 1e9 if request.HasField("grace_period") else None
        return task_pb2.KillTaskResponse(task=await self._tasks.kill(caller, request.task_id, grace))

    @unary
    async def ListTaskFiles(
        self, request: task_pb2.ListTaskFilesRequest, context: ServicerContext, caller: Caller
    ) -> task_pb2.ListTaskFilesResponse:
        task = await self._tasks.get(caller, request.task_id)
        return await self._files.list(task)

    @streaming
    async def WatchTasks(
        self, request: task_pb2.WatchTasksRequest, context: ServicerContext, caller: Caller
    ) -> AsyncIterator[task_pb2.WatchTasksResponse]:
        async for event in self._watch.stream(caller, request):
            yield event

    @streaming
    async def TailLogs(
        self, request: task_pb2.TailLogsRequest, context: ServicerContext, caller: Caller
    ) -> AsyncIterator[task_pb2.TailLogsResponse]:
        task = await self._tasks.get(caller, request.task_id)
        async for frame in self._tail.stream(task, request):
            yield frame
