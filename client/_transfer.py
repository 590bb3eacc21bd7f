"""Moving files through StorageService: a local tree into UploadFiles chunks, DownloadFiles chunks into files.

Chunks are 1 MiB; each file's first chunk carries its permission bits and its last one its SHA-256, which the
download side checks before a file takes its final name.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from simplane._api.v1 import storage_pb2
from simplane.errors import DataLoss, InvalidArgument, SimplaneError

CHUNK_BYTES = 1024 * 1024

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
        raise InvalidArgument(f"{field}: {error.filename or path}: {error.strerror}") from error
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
            mode = stat.S_IMODE(os.fstat(reader.fileno()).st_mode)
            digest = hashlib.sha256()
            offset = 0
            data = reader.read(CHUNK_BYTES)
            while True:
                following = reader.read(CHUNK_BYTES) if len(data) == CHUNK_BYTES else b""
                digest.update(data)
                chunk = storage_pb2.FileChunk(path=file.path, offset=offset, data=data)
                if offset == 0:
                    chunk.mode = mode
                if not following:
                    chunk.sha256 = digest.hexdigest()
                yield storage_pb2.UploadFilesRequest(chunk=chunk)
                if not following:
                    break
                offset += len(data)
                data = following


class DownloadWriter:
    """Writes DownloadFiles chunks under a directory. Each file is written as `<name>.part` and renamed once its
    SHA-256 matches, so a finished name always holds a complete file."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.paths: list[Path] = []
        self._path = ""  # as the server names it
        self._target: Path | None = None
        self._partial: Path | None = None
        self._writer: BinaryIO | None = None
        self._digest = hashlib.sha256()
        self._written = 0
        self._mode = 0

    def write(self, chunk: storage_pb2.FileChunk) -> int:
        """Stores one chunk; returns its size in bytes."""
        if self._writer is None or chunk.path != self._path:
            self._start(chunk)
        assert self._writer is not None
        if chunk.offset != self._written:
            raise DataLoss(f"download of {chunk.path}: expected offset {self._written}, got {chunk.offset}")
        self._writer.write(chunk.data)
        self._digest.update(chunk.data)
        self._written += len(chunk.data)
        if chunk.sha256:
            self._complete(chunk.sha256)
        return len(chunk.data)

    def finish(self) -> list[Path]:
        """The stream ended: the files written, or DataLoss if the last one was cut off."""
        if self._writer is not None:
            path = self._path
            self.abort()
            raise DataLoss(f"download ended in the middle of {path}")
        return self.paths

    def abort(self) -> None:
        """Removes the file being written, after a failure."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._partial is not None:
            self._partial.unlink(missing_ok=True)
            self._partial = None

    def _start(self, chunk: storage_pb2.FileChunk) -> None:
        if self._writer is not None:
            self.abort()
            raise DataLoss(f"download of {self._path}: the server moved on before its last chunk")
        target = self._safe_target(chunk.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._path = chunk.path
        self._target = target
        self._partial = target.with_name(target.name + ".part")
        self._writer = self._partial.open("wb")
        self._digest = hashlib.sha256()
        self._written = 0
        self._mode = chunk.mode

    def _complete(self, sha256: str) -> None:
        assert self._writer is not None and self._partial is not None and self._target is not None
        self._writer.close()
        self._writer = None
        if self._digest.hexdigest() != sha256:
            self.abort()
            raise DataLoss(f"download of {self._path}: SHA-256 mismatch")
        if self._mode:
            os.chmod(self._partial, self._mode & 0o7777)
        os.replace(self._partial, self._target)
        self._partial = None
        self.paths.append(self._target)

    def _safe_target(self, path: str) -> Path:
        relative = PurePosixPath(path)
        if not path or relative.is_absolute() or ".." in relative.parts:
            raise SimplaneError(f"download: the server sent an unsafe path {path!r}")
        return self.directory.joinpath(*relative.parts)
