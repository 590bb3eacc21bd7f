"""The on-disk spool of one output stream of a task, kept until the server has acknowledged it."""

from __future__ import annotations

import errno
import os
import struct
import time
from bisect import bisect_right
from pathlib import Path
from typing import NamedTuple

# One index record per read from the pipe: the chunk's offset in the stream and the time it was read.
_RECORD = struct.Struct("<qq")
# At most this many index records are read from disk at once when sending.
_BATCH_RECORDS = 256
# Reads that wait to be sent together travel as one chunk, stamped with the first read's time, when
# they were made within this window: a fast writer then costs a message per 64 KiB, not one per read.
MERGE_WINDOW_NS = 2_000_000
MAX_CHUNK = 64 * 1024


class SpooledChunk(NamedTuple):
    offset: int
    time_ns: int
    data: bytes


class OutputSpool:
    """Appends every chunk read from a pipe to a data file and an index file, so that memory stays constant
    however long the server is away, and resends carry the original chunk boundaries and times.

    `sent` is how far the current connection got; `acked` is what the server stored. After a reconnect,
    `rewind` moves `sent` back to the server's offset.
    """

    def __init__(self, path: Path) -> None:
        self._data_path = path
        self._index_path = path.with_name(path.name + ".index")
        self._data_fd = -1
        self._index_fd = -1
        self._records = 0
        self.size = 0
        self.sent = 0
        self.acked = 0
        # When `take` last sent something (monotonic).
        self.last_take_ns = 0
        # The index record that holds offset `sent` (or the next one to be written).
        self._sent_record = 0

    def append(self, data: bytes, time_ns: int) -> None:
        """Adds a chunk whole or not at all: when the disk is full (OSError) the files are cut back to what they
        held, so the caller can keep the chunk and try again later."""
        if self._data_fd < 0:
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
            self._data_fd = os.open(self._data_path, flags, 0o600)
            self._index_fd = os.open(self._index_path, flags, 0o600)
        try:
            _write_all(self._data_fd, data)
            _write_all(self._index_fd, _RECORD.pack(self.size, time_ns))
        except OSError:
            os.ftruncate(self._data_fd, self.size)
            os.ftruncate(self._index_fd, self._records * _RECORD.size)
            raise
        self._records += 1
        self.size += len(data)

    @property
    def unsent(self) -> bool:
        return self.sent < self.size

    @property
    def settled(self) -> bool:
        return self.acked >= self.size

    def ack(self, offset: int) -> None:
        self.acked = max(self.acked, min(offset, self.size))

    def rewind(self, offset: int) -> None:
        """Resend from `offset`, which the server says it stored up to."""
        offset = max(0, min(offset, self.size))
        self.ack(offset)
        self.sent = offset
        self._sent_record = self._record_at(offset)

    def take(self, limit: int, max_bytes: int) -> list[SpooledChunk]:
        """Unsent chunks up to stream offset `limit`, about `max_bytes` of them at most; marks them sent."""
        limit = min(limit, self.size)
        if self.sent >= limit:
            return []
        first_record = self._sent_record
        count = min(_BATCH_RECORDS, self._records - first_record)
        raw = os.pread(self._index_fd, count * _RECORD.size, first_record * _RECORD.size)
        records = [_RECORD.unpack_from(raw, i * _RECORD.size) for i in range(count)]
        first = self.sent
        spans: list[tuple[int, int, int]] = []
        next_record = first_record
        for i, (offset, time_ns) in enumerate(records):
            record_end = records[i + 1][0] if i + 1 < count else self._record_end(first_record + i)
            end = min(record_end, limit)
            if spans and end - first > max_bytes:
                break
            span_start, span_time, _ = spans[-1] if spans else (0, 0, 0)
            if spans and time_ns - span_time <= MERGE_WINDOW_NS and end - span_start <= MAX_CHUNK:
                spans[-1] = (span_start, span_time, end)
            else:
                spans.append((max(offset, first), time_ns, end))
            next_record = first_record + i + (end == record_end)
            if end == limit:
                break
        last = spans[-1][2]
        data = os.pread(self._data_fd, last - first, first)
        self.sent = last
        self._sent_record = next_record
        self.last_take_ns = time.monotonic_ns()
        return [SpooledChunk(start, t, data[start - first : end - first]) for start, t, end in spans]

    def close(self) -> None:
        for fd in (self._data_fd, self._index_fd):
            if fd >= 0:
                os.close(fd)
        self._data_fd = self._index_fd = -1

    def _record_end(self, record: int) -> int:
        if record + 1 >= self._records:
            return self.size
        return _RECORD.unpack(os.pread(self._index_fd, _RECORD.size, (record + 1) * _RECORD.size))[0]

    def _record_at(self, offset: int) -> int:
        """The index of the record whose chunk holds `offset`; the record count when `offset` is the end."""
        if offset >= self.size:
            return self._records
        offsets = _RecordOffsets(self._index_fd, self._records)
        return bisect_right(offsets, offset) - 1


def _write_all(fd: int, data: bytes) -> None:
    """Appends all of data: a short write is continued, and a full disk raises ENOSPC."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


class _RecordOffsets:
    """A read-only sequence view of the offsets in an index file, for bisecting without loading it."""

    def __init__(self, fd: int, count: int) -> None:
        self._fd = fd
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> int:
        return _RECORD.unpack(os.pread(self._fd, _RECORD.size, i * _RECORD.size))[0]
