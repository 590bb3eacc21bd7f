"""Listing and reading the files of a task's working directory, for ListFilesCommand and ReadFileCommand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from google.protobuf.timestamp_pb2 import Timestamp

from simplane._api.v1 import agent_pb2, task_pb2

READ_CHUNK = 64 * 1024
# How often a followed file is checked for appended data.
FOLLOW_INTERVAL = 0.05


class PathError(ValueError):
    """A path that is not a plain relative path inside the working directory."""


def relative_path(path: str) -> PurePosixPath:
    """`path` as a relative path that cannot leave the directory it is relative to."""
    relative = PurePosixPath(path)
    if not path or relative.is_absolute() or ".." in relative.parts or relative == PurePosixPath("."):
        raise PathError(f"{path!r}: not a relative path inside the working directory")
    return relative


# The times the server takes: nanoseconds since the epoch in 64 bits (years 1677 to 2262). A file can carry any
# time (`touch -d 2300-01-01`), so a time outside is sent as the nearest end.
_EARLIEST_NS = -(2**63) + 1_000_000_000
_LATEST_NS = 2**63 - 1_000_000_001


def timestamp_ns(time_ns: int) -> Timestamp:
    time_ns = min(max(time_ns, _EARLIEST_NS), _LATEST_NS)
    return Timestamp(seconds=time_ns // 1_000_000_000, nanos=time_ns % 1_000_000_000)


def walk_files(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every regular file under `root` (symlinks not followed), with its relative POSIX path."""
    found = []
    for directory, _, names in os.walk(root):
        base = os.path.relpath(directory, root)
        for name in names:
            full = os.path.join(directory, name)
            try:
                info = os.lstat(full)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                rel = name if base == "." else f"{base}/{name}".replace(os.sep, "/")
                found.append((rel, info))
    return found


def list_files(work_dir: Path) -> list[task_pb2.TaskFile]:
    return [
        task_pb2.TaskFile(path=rel, size=info.st_size, modify_time=timestamp_ns(info.st_mtime_ns))
        for rel, info in sorted(walk_files(work_dir))
    ]


def tail_offset(fd: int, end: int, lines: int) -> int:
    """The offset of the first of the last `lines` lines before `end`, reading backwards from the end.

    A newline at the very end closes the last line rather than starting an empty one.
    """
    position = end
    wanted = lines + 1 if end and os.pread(fd, 1, end - 1) == b"\n" else lines
    while position > 0:
        start = max(0, position - READ_CHUNK)
        block = os.pread(fd, position - start, start)
        index = len(block)
        while wanted:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            wanted -= 1
        if not wanted:
            return start + index + 1
        position = start
    return 0


async def read_file(
    work_dir: Path,
    command: agent_pb2.ReadFileCommand,
    process_ended: asyncio.Event,
) -> AsyncIterator[agent_pb2.FileData]:
    """FileData frames for `command`, in offset order; the last one has eof or error set.

    A followed read goes on until `process_ended` is set, checking for new data every FOLLOW_INTERVAL.
    """
    request_id = command.request_id
    try:
        path = _resolve(work_dir, command.path)
        if not stat.S_ISREG(path.stat().st_mode):
            raise PathError(f"{command.path}: not a regular file")
        fd = os.open(path, os.O_RDONLY)
    except (PathError, OSError) as err:
        yield agent_pb2.FileData(request_id=request_id, error=_describe(command.path, err))
        return
    try:
        size = os.fstat(fd).st_size
        if command.tail_lines > 0:
            offset = tail_offset(fd, size, command.tail_lines)
        else:
            offset = min(max(command.offset, 0), size)
        while True:
            finished = not command.follow or process_ended.is_set()
            data = os.pread(fd, READ_CHUNK, offset)
            while len(data) == READ_CHUNK:
                yield _frame(request_id, offset, data)
                offset += len(data)
                data = os.pread(fd, READ_CHUNK, offset)
            if finished:
                yield _frame(request_id, offset, data, eof=True)
                return
            if data:
                yield _frame(request_id, offset, data)
                offset += len(data)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process_ended.wait(), FOLLOW_INTERVAL)
    finally:
        os.close(fd)


def _frame(request_id: str, offset: int, data: bytes, eof: bool = False) -> agent_pb2.FileData:
    return agent_pb2.FileData(
        request_id=request_id, offset=offset, data=data, time=timestamp_ns(time.time_ns()), eof=eof
    )


def _resolve(work_dir: Path, path: str) -> Path:
    full = (work_dir / relative_path(path)).resolve()
    if not full.is_relative_to(work_dir.resolve()):
        raise PathError(f"{path!r}: outside the working directory")
    return full


def _describe(path: str, err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return f"{path}: no such file"
    if isinstance(err, OSError):
        return f"{path}: {err.strerror}"
    return str(err)
