"""Moving files through StorageService: a local tree into UploadFiles chunks, DownloadFiles chunks into files.

The chunking, checksums and safe writing are simplane._protocol.transfer's, shared with the agent and the server.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from simplane._api.v1 import storage_pb2
from simplane._protocol.paths import UnsafePath, relative_path
from simplane._protocol.transfer import CorruptTransfer, IncomingFile, file_chunks
from simplane.errors import DataLoss, InvalidArgument, SimplaneError

Progress = Callable[[int, int], None]
"""Called as bytes move: progress(done_bytes, total_bytes)."""


@dataclass(frozen=True)
class LocalFile:
    source: Path
    path: str  # relative to the upload prefix, "/"-separated
    size: int


@dataclass(frozen=True)
class UploadPlan:
    files: list[LocalFile]
    total_bytes: int


def plan_upload(path: str | os.PathLike[str], field: str) -> UploadPlan:
    """The files under a directory (or the one file) to upload; InvalidArgument names `field` if unreadable."""
    root = Path(path)
    try:
        if root.is_dir():
            files = [_local_file(source, source.relative_to(root).as_posix()) for source in _walk(root)]
        else:
            files = [_local_file(root, root.name)]
    except OSError as error:
        raise InvalidArgument.of_field(field, f"{error.filename or path}: {error.strerror}") from error
    return UploadPlan(files, sum(file.size for file in files))


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under root (symlinks to files included), in a stable order."""

    def fail(error: OSError) -> None:
        raise error

    for directory, subdirectories, names in os.walk(root, onerror=fail):
        subdirectories.sort()
        for name in sorted(names):
            source = Path(directory, name)
            if stat.S_ISREG(source.stat().st_mode):
                yield source


def _local_file(source: Path, path: str) -> LocalFile:
    return LocalFile(source, path, source.stat().st_size)


def upload_requests(plan: UploadPlan, prefix: str) -> Generator[storage_pb2.UploadFilesRequest, None, None]:
    """The UploadFiles request stream: the prefix alone, then each file's chunks in order."""
    yield storage_pb2.UploadFilesRequest(prefix=prefix)
    for file in plan.files:
        with file.source.open("rb") as reader:
            for chunk in file_chunks(file.path, reader):
                yield storage_pb2.UploadFilesRequest(chunk=chunk)


class DownloadWriter:
    """Writes DownloadFiles chunks under a directory, each file through a temporary file that takes its name only
    once its SHA-256 matches (simplane._protocol.transfer), so a finished name always holds a complete file."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.paths: list[Path] = []
        self._path = ""  # as the server names it
        self._incoming: IncomingFile | None = None

    def write(self, chunk: storage_pb2.FileChunk) -> int:
        """Stores one chunk; returns its size in bytes."""
        if self._incoming is None or chunk.path != self._path:
            self._start(chunk)
        assert self._incoming is not None
        try:
            self._incoming.write(chunk.offset, chunk.data)
            if chunk.sha256:
                self._incoming.finish(chunk.sha256)
        except CorruptTransfer as error:
            self.abort()
            raise DataLoss(f"download of {chunk.path}: {error}") from None
        if chunk.sha256:
            self.paths.append(self._incoming.target)
            self._incoming = None
        return len(chunk.data)

    def finish(self) -> list[Path]:
        """The stream ended: the files written, or DataLoss if the last one was cut off."""
        if self._incoming is not None:
            path = self._path
            self.abort()
            raise DataLoss(f"download ended in the middle of {path}")
        return self.paths

    def abort(self) -> None:
        """Removes the file being written, after a failure."""
        if self._incoming is not None:
            self._incoming.discard()
            self._incoming = None

    def _start(self, chunk: storage_pb2.FileChunk) -> None:
        if self._incoming is not None:
            self.abort()
            raise DataLoss(f"download of {self._path}: the server moved on before its last chunk")
        try:
            relative = relative_path(chunk.path)
        except UnsafePath:
            raise SimplaneError(f"download: the server sent an unsafe path {chunk.path!r}") from None
        self._path = chunk.path
        self._incoming = IncomingFile(self.directory.joinpath(*relative.parts), (chunk.mode or 0o644) & 0o7777)
