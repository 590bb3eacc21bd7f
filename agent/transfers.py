"""Staging a task's inputs with DownloadInputs and storing its outputs with UploadOutputs."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from simplane._api.v1 import agent_pb2, agent_pb2_grpc, storage_pb2
from simplane._protocol.backoff import Backoff
from simplane._protocol.paths import UnsafePath, relative_path
from simplane._protocol.transfer import CorruptTransfer, IncomingFile, file_chunks
from simplane.agent.task_files import walk_files

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

    def __init__(self, stub: agent_pb2_grpc.AgentServiceAsyncStub, metadata: tuple[tuple[str, str], ...]) -> None:
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
                incoming.discard()
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
                    for chunk in file_chunks(path, file):
                        uploaded.bytes += len(chunk.data)
                        yield agent_pb2.UploadOutputsRequest(chunk=chunk)
                finally:
                    file.close()
                uploaded.files += 1

        await self._stub.UploadOutputs(requests(), metadata=self._metadata, wait_for_ready=True)
        return uploaded


class _IncomingFile:
    """One input file being written, chunk by chunk, in offset order."""

    def __init__(self, work_dir: Path, first: storage_pb2.FileChunk) -> None:
        try:
            relative = relative_path(first.path)
        except UnsafePath as err:
            raise TransferError(f"input {err}") from err
        self.path = first.path
        self._file = IncomingFile(work_dir / relative, stat.S_IMODE(first.mode or 0o644))

    @property
    def size(self) -> int:
        return self._file.size

    def write(self, chunk: storage_pb2.FileChunk) -> None:
        try:
            self._file.write(chunk.offset, chunk.data)
        except CorruptTransfer as err:
            raise TransferError(f"input {self.path}: {err}") from err

    def finish(self, sha256: str) -> tuple[int, int]:
        """Checks the file's checksum and gives it its name; returns its (size, mtime in ns)."""
        try:
            self._file.finish(sha256)
        except CorruptTransfer as err:
            raise TransferError(f"input {self.path}: {err}") from err
        info = os.stat(self._file.target)
        return info.st_size, info.st_mtime_ns

    def discard(self) -> None:
        self._file.discard()
