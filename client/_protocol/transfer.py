"""Files moved as a stream of FileChunk messages, the same way by the client, the agent and the server.

A file travels as chunks of at most CHUNK_BYTES in offset order; its first chunk carries its permission bits and
its last one the SHA-256 of the whole file (an empty file is one empty chunk carrying both). The receiving side
writes into a temporary file beside the target, checks each offset and, at the end, the checksum, then flushes
the file to disk and renames it into place: a target name never holds a partial or corrupt file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from simplane._api.v1 import storage_pb2

CHUNK_BYTES = 1024 * 1024


class CorruptTransfer(Exception):
    """The chunks do not make up the file the sender meant; nothing was kept of it."""


class OffsetMismatch(CorruptTransfer):
    """A chunk did not start where the bytes received so far end: one was lost, repeated or reordered."""


class ChecksumMismatch(CorruptTransfer):
    """The bytes received do not have the SHA-256 the last chunk announced."""


def file_chunks(
    path: str, file: BinaryIO, *, mode: int | None = None, sha256: str | None = None
) -> Iterator[storage_pb2.FileChunk]:
    """The chunks of one open file, read from where it stands to its end, named `path` on the wire.

    `mode` defaults to the file's own permission bits. `sha256` is the checksum recorded when the file was
    stored, sent instead of one computed while reading, so that a file changed on disk since fails the
    receiver's check; without it, the SHA-256 of the bytes read is sent.
    """
    if mode is None:
        mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
    digest = hashlib.sha256()
    offset = 0
    data = file.read(CHUNK_BYTES)
    while True:
        # One chunk read ahead, so the last chunk is known to be the last when it is sent.
        following = file.read(CHUNK_BYTES) if len(data) == CHUNK_BYTES else b""
        if sha256 is None:
            digest.update(data)
        last = not following
        yield storage_pb2.FileChunk(
            path=path,
            offset=offset,
            data=data,
            mode=mode if offset == 0 else 0,
            sha256=(digest.hexdigest() if sha256 is None else sha256) if last else "",
        )
        if last:
            return
        offset += len(data)
        data = following


INCOMING_PREFIX = ".incoming-"
"""How the temporary file of a file being received is named, beside its target, until it is complete."""


class IncomingFile:
    """One file being received, chunk by chunk, into a temporary file in its target's folder (created if
    missing); `finish` gives it the target's name and `mode`, `discard` removes it."""

    def __init__(self, target: Path, mode: int) -> None:
        self.target = target
        self.mode = mode
        self.size = 0
        self._digest = hashlib.sha256()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=INCOMING_PREFIX)
        self._temp = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, offset: int, data: bytes) -> None:
        """Appends one chunk's data, which must start at `offset`."""
        if offset != self.size:
            raise OffsetMismatch(f"expected offset {self.size}, got {offset}")
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)

    def finish(self, sha256: str) -> None:
        """Checks the whole file against `sha256`, then makes it durable and renames it to the target."""
        try:
            if self._digest.hexdigest() != sha256.lower():
                raise ChecksumMismatch("SHA-256 mismatch")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._temp, self.mode)
            os.replace(self._temp, self.target)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Removes what was received; the target is left as it was."""
        with contextlib.suppress(OSError):  # flushing what is thrown away fails on a full disk; no matter
            self._file.close()
        self._temp.unlink(missing_ok=True)
