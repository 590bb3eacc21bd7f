"""Staging a task's inputs with DownloadInputs and storing its outputs with UploadOutputs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import grpc

from simplane._api.v1 import agent_pb2, agent_pb2_grpc, storage_pb2
from simplane.agent.backoff import Backoff
from simplane.agent.task_files import PathError, relative_path, walk_files

UPLOAD_CHUNK = 1024 * 1024
# Failures that say nothing about the transfer itself: the server restarted or the network dropped.
RETRIED_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

T = TypeVar("T")


class TransferError(Exception):
    """The inputs or outputs of a task could not be transferred; the task fails with this message."""


@dataclass
class StagedInputs:
    """What was staged into a working directory, so that unchanged inputs are not uploaded as outputs."""

    # Relative path -> (size, mtime in ns) right after staging.
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    bytes: int = 0


@dataclass
class UploadedOutputs:
    files: int = 0
    bytes: int = 0


class Transfers:
    """File transfers for the agent's tasks over its channel, retried while the server is unreachable."""

    def __init__(self, stub: agent_pb2_grpc.AgentServiceStub, metadata: tuple[tuple[str, str], ...]) -> None:
        self._stub = stub
        self._metadata = metadata

    async def download_inputs(self, task_id: str, work_dir: Path) -> StagedInputs:
        """Stages the task's inputs into `work_dir`, which is emptied before each attempt."""
        return await self._retrying("downloading inputs", lambda: self._download(task_id, work_dir))

    async def upload_outputs(self, task_id: str, work_dir: Path, inputs: StagedInputs) -> UploadedOutputs:
        """Uploads the regular files of `work_dir` except inputs left as they were staged."""
        return await self._retrying("uploading outputs", lambda: self._upload(task_id, work_dir, inputs))

    async def _retrying(self, action: str, attempt: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff()
        while True:
            try:
                return await attempt()
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRIED_CODES:
                    raise TransferError(f"{action}: {err.code().name}: {err.details()}") from err
            except OSError as err:
                raise TransferError(f"{action}: {err}") from err
            await asyncio.sleep(backoff.next_delay())

    async def _download(self, task_id: str, work_dir: Path) -> StagedInputs:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        staged = StagedInputs()
        incoming: _IncomingFile | None = None
        call = self._stub.DownloadInputs(
            agent_pb2.DownloadInputsRequest(task_id=task_id), metadata=self._metadata, wait_for_ready=True
        )
        try:
            async for response in call:
                chunk = response.chunk
                if incoming is None:
                    incoming = _IncomingFile(work_dir, chunk)
                elif chunk.path != incoming.path:
                    raise TransferError(f"input {incoming.path}: incomplete")
                incoming.write(chunk)
                if chunk.sha256:
                    staged.files[incoming.path] = incoming.finish(chunk.sha256)
                    staged.bytes += incoming.size
                    incoming = None
        finally:
            if incoming is not None:
                incoming.file.close()
        if incoming is not None:
            raise TransferError(f"input {incoming.path}: incomplete")
        return staged

    async def _upload(self, task_id: str, work_dir: Path, inputs: StagedInputs) -> UploadedOutputs:
        uploaded = UploadedOutputs()
        with os.scandir(work_dir) as entries:
            if next(entries, None) is None:  # the common case of a task that wrote no files: no thread, no call
                return uploaded
        outputs = [
            (path, info)
            for path, info in await asyncio.to_thread(walk_files, work_dir)
            if inputs.files.get(path) != (info.st_size, info.st_mtime_ns)
        ]
        if not outputs:
            return uploaded

        async def requests() -> AsyncIterator[agent_pb2.UploadOutputsRequest]:
            yield agent_pb2.UploadOutputsRequest(task_id=task_id)
            for path, _ in outputs:
                try:
                    file = open(work_dir / path, "rb")  # noqa: SIM115 - closed in the finally below
                except FileNotFoundError:
                    continue
                try:
                    for chunk in _file_chunks(path, file):
                        uploaded.bytes += len(chunk.data)
                        yield agent_pb2.UploadOutputsRequest(chunk=chunk)
                finally:
                    file.close()
                uploaded.files += 1

        await self._stub.UploadOutputs(requests(), metadata=self._metadata, wait_for_ready=True)
        return uploaded


def _file_chunks(path: str, file: BinaryIO) -> Iterator[storage_pb2.FileChunk]:
    """The chunks of one file: the mode on the first, the SHA-256 of the whole file on the last."""
    digest = hashlib.sha256()
    mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
    offset = 0
    data = file.read(UPLOAD_CHUNK)
    while True:
        following = file.read(UPLOAD_CHUNK) if len(data) == UPLOAD_CHUNK else b""
        digest.update(data)
        yield storage_pb2.FileChunk(
            path=path,
            offset=offset,
            data=data,
            mode=mode if offset == 0 else 0,
            sha256="" if following else digest.hexdigest(),
        )
        if not following:
            return
        offset += len(data)
        data = following


class _IncomingFile:
    """One input file being written, chunk by chunk, in offset order."""

    def __init__(self, work_dir: Path, first: storage_pb2.FileChunk) -> None:
        try:
            relative = relative_path(first.path)
        except PathError as err:
            raise TransferError(f"input {err}") from err
        self.path = first.path
        self.target = work_dir / relative
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.target, "wb")  # noqa: SIM115 - closed by finish() or by the download
        self.mode = first.mode or 0o644
        self.size = 0
        self._digest = hashlib.sha256()

    def write(self, chunk: storage_pb2.FileChunk) -> None:
        if chunk.offset != self.size:
            raise TransferError(f"input {self.path}: chunk at offset {chunk.offset}, expected {self.size}")
        self.file.write(chunk.data)
        self._digest.update(chunk.data)
        self.size += len(chunk.data)

    def finish(self, sha256: str) -> tuple[int, int]:
        """Closes the file after checking its checksum; returns its (size, mtime in ns)."""
        self.file.close()
        if self._digest.hexdigest() != sha256.lower():
            raise TransferError(f"input {self.path}: checksum mismatch")
        os.chmod(self.target, stat.S_IMODE(self.mode))
        info = os.stat(self.target)
        return info.st_size, info.st_mtime_ns
