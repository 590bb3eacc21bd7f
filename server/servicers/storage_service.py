"""StorageService: the caller's files."""

from __future__ import annotations

from collections.abc import AsyncIterator

from simplane._api.v1 import storage_pb2, storage_pb2_grpc
from simplane.server.auth import Authenticator
from simplane.server.caller import Caller
from simplane.server.file_store import FileStore, check_path
from simplane.server.servicers.authorization import AuthorizedServicer, ServicerContext
from simplane.server.status import streaming, unary
from simplane.server.tasks import TaskRegistry


class StorageService(AuthorizedServicer, storage_pb2_grpc.StorageServiceServicer):
    def __init__(self, authenticator: Authenticator, files: FileStore, tasks: TaskRegistry) -> None:
        super().__init__(authenticator)
        self._files = files
        self._tasks = tasks

    @unary
    async def UploadFiles(
        self, request_iterator: AsyncIterator[storage_pb2.UploadFilesRequest], context: ServicerContext, caller: Caller
    ) -> storage_pb2.UploadFilesResponse:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            return storage_pb2.UploadFilesResponse()

        async def chunks() -> AsyncIterator[storage_pb2.FileChunk]:
            if first.HasField("chunk"):
                yield first.chunk
            async for message in messages:
                yield message.chunk

        files, size = await self._files.receive(caller.user, first.prefix, chunks())
        return storage_pb2.UploadFilesResponse(prefix=first.prefix, files=files, bytes=size)

    @unary
    async def UploadFile(
        self, request: storage_pb2.UploadFileRequest, context: ServicerContext, caller: Caller
    ) -> storage_pb2.UploadFileResponse:
        chunk = request.chunk  # one whole file (request_limits checked it)

        async def one() -> AsyncIterator[storage_pb2.FileChunk]:
            yield chunk

        await self._files.receive(caller.user, request.prefix, one())
        stored = storage_pb2.StoredFile(path=request.prefix + chunk.path, size=len(chunk.data), sha256=chunk.sha256)
        stored.create_time.GetCurrentTime()
        return storage_pb2.UploadFileResponse(file=stored)

    @streaming
    async def DownloadFiles(
        self, request: storage_pb2.DownloadFilesRequest, context: ServicerContext, caller: Caller
    ) -> AsyncIterator[storage_pb2.DownloadFilesResponse]:
        prefix = check_path("prefix", request.prefix, prefix=True)
        await self._tasks.check_download(caller, prefix)
        files = await self._files.list(caller.user, prefix)
        async for chunk in self._files.chunks(caller.user, files, prefix):
            yield storage_pb2.DownloadFilesResponse(chunk=chunk)

    @unary
    async def ListFiles(
        self, request: storage_pb2.ListFilesRequest, context: ServicerContext, caller: Caller
    ) -> storage_pb2.ListFilesResponse:
        response = storage_pb2.ListFilesResponse()
        for stored in await self._files.list(caller.user, request.prefix):
            entry = response.files.add(path=stored.path, size=stored.size, sha256=stored.sha256)
            entry.create_time.FromNanoseconds(int(stored.created_at * 1e9))
        return response

    @unary
    async def DeleteFiles(
        self, request: storage_pb2.DeleteFilesRequest, context: ServicerContext, caller: Caller
    ) -> storage_pb2.DeleteFilesResponse:
        prefix = check_path("prefix", request.prefix, prefix=True)
        return storage_pb2.DeleteFilesResponse(files=await self._files.delete(caller.user, prefix))
