"""Task output stored by the server, as byte streams with offsets, so it outlives the machine that made it.

Each stream of each task is two files under <data dir>/logs/<task id>/: the bytes (`stdout`), and an index of
fixed 16-byte records (`stdout.idx`: offset, time in ns) marking where each chunk the agent read starts and when
it was read. Appends are idempotent by offset, so a resend after a reconnect stores nothing twice. Readers use
positional reads at their own pace, so a slow reader holds no memory and blocks nobody.

The newest stored pieces of each stream are kept in memory as read, so a thousand followers of one task cost one
disk read per append, not a thousand; each append wakes them through one shared future per stream.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import os
import struct
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from simplane._protocol.tail import tail_offset
from simplane.server.disk_space import DataDirSpace

_RECORD = struct.Struct("<qq")
MAX_FRAME = 256 * 1024
MAX_OPEN_STREAMS = 512
# The newest bytes of each open stream kept in memory for followers (at most twice this per open stream).
RECENT_BYTES = 32 * 1024
STREAM_NAMES = ("stdout", "stderr")


@dataclass(eq=False)
class Piece:
    offset: int
    data: bytes
    time_ns: int

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass
class _Stream:
    data_fd: int
    index_fd: int
    size: int
    index_count: int
    last_time_ns: int
    changed: asyncio.Future[None] | None = None  # what followers wait on; resolved by the next append
    # Contiguous stored pieces ending where the newest read ended: between RECENT_BYTES and twice that.
    recent: list[Piece] = field(default_factory=list)

    def wake(self) -> None:
        if self.changed is not None:
            if not self.changed.done():
                self.changed.set_result(None)
            self.changed = None

    def remember(self, pieces: list[Piece]) -> None:
        """Keeps freshly read pieces that continue the recent ones, dropping the oldest beyond RECENT_BYTES."""
        if self.recent and self.recent[-1].end != pieces[0].offset:
            self.recent = []
        self.recent.extend(pieces)
        if self.recent[-1].end - self.recent[0].offset > 2 * RECENT_BYTES:
            keep = bisect.bisect_right(self.recent, self.recent[-1].end - RECENT_BYTES, key=_start) - 1
            del self.recent[: max(keep, 0)]

    def recall(self, offset: int, limit: int) -> list[Piece] | None:
        """The recent pieces from offset (the first clipped to start there), or None if offset is not in them."""
        recent = self.recent
        if not recent or not recent[0].offset <= offset < recent[-1].end:
            return None
        first = bisect.bisect_right(recent, offset, key=_start) - 1
        last = bisect.bisect_left(recent, offset + limit, lo=first, key=_start)
        pieces = recent[first : max(last, first + 1)]
        if pieces[0].offset < offset:
            head = pieces[0]
            pieces[0] = Piece(offset, head.data[offset - head.offset :], head.time_ns)
        return pieces


def _start(piece: Piece) -> int:
    return piece.offset


class LogStore:
    def __init__(self, root: Path, space: DataDirSpace) -> None:
        self._root = root
        self.space = space
        self._streams: OrderedDict[tuple[str, str], _Stream] = OrderedDict()  # least recently used first

    def _open(self, task_id: str, stream: str) -> _Stream:
        key = (task_id, stream)
        opened = self._streams.get(key)
        if opened is not None:
            self._streams.move_to_end(key)
        else:
            self._evict()
            folder = self._root / task_id
            folder.mkdir(parents=True, exist_ok=True)
            data_fd = os.open(folder / stream, os.O_RDWR | os.O_CREAT, 0o600)
            index_fd = os.open(folder / f"{stream}.idx", os.O_RDWR | os.O_CREAT, 0o600)
            count = os.fstat(index_fd).st_size // _RECORD.size
            size = os.fstat(data_fd).st_size
            last_time = _RECORD.unpack(os.pread(index_fd, _RECORD.size, (count - 1) * _RECORD.size))[1] if count else 0
            opened = _Stream(data_fd, index_fd, size, count, last_time)
            self._streams[key] = opened
        return opened

    def size(self, task_id: str, stream: str) -> int:
        try:
            return self._open(task_id, stream).size
        except OSError as error:
            if not self.space.refused(error):
                raise
            return 0  # the stream's file could not even be created: nothing of it is stored

    def append(self, task_id: str, stream: str, offset: int, data: bytes, time_ns: int) -> int:
        """Stores the part of data not stored yet; returns the stream's size (what to acknowledge).

        A chunk that starts past the end leaves a gap and is refused: the returned size tells the agent where
        to resend from. So is a chunk the disk has no room for: nothing of it is kept, the size stays where it
        was, and the data dir is marked full.
        """
        try:
            state = self._open(task_id, stream)
        except OSError as error:
            if not self.space.refused(error):
                raise
            return 0  # as in size()
        if offset > state.size:
            return state.size
        fresh = data[state.size - offset :]
        if fresh:
            try:
                _write_all(state.data_fd, fresh, state.size)
                _write_all(state.index_fd, _RECORD.pack(state.size, time_ns), state.index_count * _RECORD.size)
            except OSError as error:
                # What got through is cut off again, so the files never hold more than `size` says, and the
                # index never marks a chunk past the stored bytes. Shrinking a file needs no free space.
                os.ftruncate(state.data_fd, state.size)
                os.ftruncate(state.index_fd, state.index_count * _RECORD.size)
                if not self.space.refused(error):
                    raise
                return state.size
            self.space.wrote()
            state.index_count += 1
            state.size += len(fresh)
            state.last_time_ns = time_ns
            state.wake()
        return state.size

    def close_task(self, task_id: str) -> None:
        """The task ended and its output is complete: wakes its followers so they can finish."""
        for name in STREAM_NAMES:
            state = self._streams.get((task_id, name))
            if state is not None:
                state.wake()

    def _evict(self) -> None:
        """Keeps the number of open files bounded: closes the least recently used streams nobody waits on."""
        if len(self._streams) < MAX_OPEN_STREAMS:
            return
        idle = [key for key, state in self._streams.items() if state.changed is None]
        for key in idle[: MAX_OPEN_STREAMS // 4]:
            state = self._streams.pop(key)
            os.close(state.data_fd)
            os.close(state.index_fd)

    def close(self) -> None:
        for state in self._streams.values():
            os.close(state.data_fd)
            os.close(state.index_fd)
        self._streams.clear()

    def read(self, task_id: str, stream: str, offset: int, limit: int = MAX_FRAME) -> list[Piece]:
        """Stored bytes from offset, up to about limit, split where the agent's chunks started."""
        state = self._open(task_id, stream)
        pieces = state.recall(offset, limit)
        if pieces is not None:
            return pieces
        end = min(state.size, offset + limit)
        if offset >= end:
            return []
        pieces = self._read_stored(state, offset, end)
        if end == state.size:  # the newest bytes, which followers are about to ask for too
            state.remember(pieces)
        return pieces

    def _read_stored(self, state: _Stream, offset: int, end: int) -> list[Piece]:
        data = os.pread(state.data_fd, end - offset, offset)
        marks = self._marks(state, offset, end)
        pieces = []
        for i, (start, time_ns) in enumerate(marks):
            stop = marks[i + 1][0] if i + 1 < len(marks) else end
            pieces.append(Piece(start, data[start - offset : stop - offset], time_ns))
        return pieces

    def _marks(self, state: _Stream, offset: int, end: int) -> list[tuple[int, int]]:
        """Index entries covering [offset, end): the first one clipped to start at offset."""
        low, high = 0, state.index_count - 1
        first = 0
        while low <= high:  # the last record with record.offset <= offset
            middle = (low + high) // 2
            if self._record(state, middle)[0] <= offset:
                first = middle
                low = middle + 1
            else:
                high = middle - 1
        marks = [(offset, self._record(state, first)[1] if state.index_count else time.time_ns())]
        position = first + 1
        while position < state.index_count:
            start, time_ns = self._record(state, position)
            if start >= end:
                break
            marks.append((start, time_ns))
            position += 1
        return marks

    @staticmethod
    def _record(state: _Stream, position: int) -> tuple[int, int]:
        return _RECORD.unpack(os.pread(state.index_fd, _RECORD.size, position * _RECORD.size))

    def tail_offset(self, task_id: str, stream: str, lines: int) -> int:
        """The offset where the last `lines` lines of the stream start."""
        state = self._open(task_id, stream)
        return tail_offset(state.data_fd, state.size, lines)

    def changed(self, task_id: str, stream: str) -> asyncio.Future[None]:
        """A future resolved by the next append to the stream (or the task's end); shared by all its followers."""
        state = self._open(task_id, stream)
        if state.changed is None:
            state.changed = asyncio.get_running_loop().create_future()
        return state.changed

    async def follow(
        self, task_id: str, offsets: dict[str, int], ended: Callable[[], bool], idle: float
    ) -> AsyncIterator[tuple[str, list[Piece]]]:
        """Yields (stream, stored pieces) from each stream's offset as they arrive, until `ended()` and everything
        was read; the streams take turns, up to MAX_FRAME each.

        Yields ("", []) after `idle` seconds without data, so the caller can send a heartbeat.
        """
        offsets = dict(offsets)
        while True:
            was_ended = ended()
            # Taken before reading, so an append during the read or the caller's write is not missed.
            signals = [self.changed(task_id, stream) for stream in offsets]
            found = False
            for stream, offset in offsets.items():
                pieces = self.read(task_id, stream, offset)
                if pieces:
                    found = True
                    offsets[stream] = pieces[-1].end
                    yield stream, pieces
            if found:
                continue
            if was_ended:
                return
            # asyncio.wait never cancels the shared futures, which other followers wait on too.
            done, _ = await asyncio.wait(signals, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                yield "", []


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite until all of data is written: a short write is continued, and a full disk raises ENOSPC."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]
        offset += written
