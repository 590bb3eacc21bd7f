"""Users' files (task inputs and outputs), on disk under <data dir>/files/<user>/, listed from the database.

Every file arrives in chunks and is checked against the SHA-256 its last chunk carries before it replaces
anything, so a broken upload never leaves a half file behind.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from sqlalchemy import delete, select
from sqlmodel import Session, col

from simplane._api.v1 import storage_pb2
from simplane._protocol.paths import UnsafePath, folder_prefix, relative_path
from simplane._protocol.tail import tail_offset
from simplane._protocol.transfer import ChecksumMismatch, IncomingFile, OffsetMismatch, file_chunks
from simplane.server import errors
from simplane.server.disk_space import NO_SPACE, DataDirSpace
from simplane.server.log_store import MAX_FRAME
from simplane.server.store.database import Database
from simplane.server.store.models import StoredFileRow

# Stored files are the server's user's alone; the mode they were uploaded with is kept in the database.
STORED_FILE_MODE = 0o600


def check_path(field: str, path: str, *, prefix: bool = False) -> str:
    """A clean relative path (simplane._protocol.paths), or a prefix: empty or such a path and '/'."""
    try:
        if prefix:
            return folder_prefix(path)
        relative_path(path)
    except UnsafePath as error:
        raise errors.InvalidArgument(field, str(error)) from None
    return path


class FileStore:
    def __init__(self, database: Database, root: Path, space: DataDirSpace) -> None:
        self._database = database
        self._root = root
        self._space = space

    def _user_root(self, owner: str) -> Path:
        return self._root / owner

    async def receive(self, owner: str, prefix: str, chunks: AsyncIterator[storage_pb2.FileChunk]) -> tuple[int, int]:
        """Stores the files of a chunk stream under prefix; returns (files, bytes).

        A full data dir refuses the upload (ResourceExhausted), before it starts or halfway: the file being
        written is removed, the files stored before it stay.
        """
        check_path("prefix", prefix, prefix=True)
        self._space.require()
        root = self._user_root(owner)
        files = total = 0
        current: _Incoming | None = None
        async for chunk in chunks:
            if current is None or chunk.path != current.path:
                if current is not None:
                    current.discard()
                    raise errors.InvalidArgument("chunk.sha256", f"file {current.path!r} ended without a checksum")
                check_path("chunk.path", chunk.path)
                try:
                    current = _Incoming(root, prefix, chunk.path, chunk.mode)
                except OSError as error:
                    if self._space.refused(error):
                        raise errors.ResourceExhausted(NO_SPACE) from error
                    raise
            incoming = current
            try:
                await asyncio.to_thread(incoming.write, chunk.offset, chunk.data)
                if chunk.sha256:
                    size = await asyncio.to_thread(incoming.finish, chunk.sha256)
                    self._space.wrote()
                    await self._database.run(_record, owner, incoming.relative, size, chunk.sha256, incoming.mode)
                    files += 1
                    total += size
                    current = None
            except errors.DomainError:
                incoming.discard()
                raise
            except OSError as error:
                incoming.discard()
                if self._space.refused(error):
                    raise errors.ResourceExhausted(NO_SPACE) from error
                raise
        if current is not None:
            current.discard()
            raise errors.InvalidArgument("chunk.sha256", f"file {current.path!r} ended without a checksum")
        return files, total

    async def list(self, owner: str, prefix: str) -> list[StoredFileRow]:
        return await self._database.run(
            lambda s: list(
                s.execute(
                    select(StoredFileRow)
                    .where(
                        col(StoredFileRow.owner) == owner, col(StoredFileRow.path).startswith(prefix, autoescape=True)
                    )
                    .order_by(StoredFileRow.path)
                ).scalars()
            )
        )

    async def chunks(
        self, owner: str, files: Sequence[StoredFileRow], strip: str
    ) -> AsyncIterator[storage_pb2.FileChunk]:
        """Each file as chunks, paths relative to `strip`; the last chunk of each carries its SHA-256."""
        root = self._user_root(owner)
        for stored in files:
            with open(root / stored.path, "rb") as handle:
                chunks = file_chunks(stored.path[len(strip) :], handle, mode=stored.mode, sha256=stored.sha256)
                while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
                    yield chunk

    def read_range(self, owner: str, path: str, offset: int) -> tuple[bytes, int]:
        """Bytes of a stored file from offset (one frame of a tail at most) and the file's size."""
        with open(self._user_root(owner) / path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(offset)
            return handle.read(MAX_FRAME), size

    def tail_offset(self, owner: str, path: str, lines: int) -> int:
        """Where the last `lines` lines of a stored file start, reading backwards only as far as needed."""
        with open(self._user_root(owner) / path, "rb") as handle:
            return tail_offset(handle.fileno(), os.fstat(handle.fileno()).st_size, lines)

    async def delete(self, owner: str, prefix: str) -> int:
        files = await self.list(owner, prefix)
        root = self._user_root(owner)

        def unlink_all() -> None:
            for stored in files:
                (root / stored.path).unlink(missing_ok=True)

        await asyncio.to_thread(unlink_all)
        await self._database.run(
            lambda s: s.execute(
                delete(StoredFileRow).where(
                    col(StoredFileRow.owner) == owner, col(StoredFileRow.path).startswith(prefix, autoescape=True)
                )
            )
        )
        return len(files)


class _Incoming:
    """One uploaded file being received, with the server's errors for what the sender got wrong."""

    def __init__(self, root: Path, prefix: str, path: str, mode: int) -> None:
        self.path = path
        self.relative = prefix + path
        self.mode = (mode or 0o644) & 0o777
        target = root / self.relative
        if target.is_dir():
            raise errors.InvalidArgument("chunk.path", f"{self.relative!r} is a directory")
        try:
            self._file = IncomingFile(target, STORED_FILE_MODE)
        except (FileExistsError, NotADirectoryError):
            raise errors.InvalidArgument("chunk.path", f"{self.relative!r}: a parent of it is a file") from None

    def write(self, offset: int, data: bytes) -> None:
        try:
            self._file.write(offset, data)
        except OffsetMismatch as error:
            raise errors.InvalidArgument("chunk.offset", f"file {self.path!r}: {error}") from None

    def finish(self, sha256: str) -> int:
        try:
            self._file.finish(sha256)
        except ChecksumMismatch as error:
            raise errors.InvalidArgument("chunk.sha256", f"file {self.path!r}: {error}") from None
        return self._file.size

    def discard(self) -> None:
        self._file.discard()


def _record(session: Session, owner: str, path: str, size: int, sha256: str, mode: int) -> None:
    values = {"owner": owner, "path": path, "size": size, "sha256": sha256, "created_at": time.time(), "mode": mode}
    # The database's own upsert; its dialect module is imported here, where it is used, to keep start-up short.
    dialect = importlib.import_module(f"sqlalchemy.dialects.{session.get_bind().dialect.name}")
    statement = dialect.insert(StoredFileRow).values(**values)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["owner", "path"], set_={k: values[k] for k in ("size", "sha256", "created_at", "mode")}
        )
    )
