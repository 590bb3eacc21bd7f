"""Listing and reading the files of a task's working directory, for ListFilesCommand and ReadFileCommand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from simplane._api.v1 import agent_pb2, task_pb2
from simplane._protocol.paths import UnsafePath, relative_path
from simplane._protocol.tail import tail_offset

READ_CHUNK = 64 * 1024
# How often a followed file is checked for appended data.
FOLLOW_INTERVAL = 0.05


class NotARegularFile(Exception):
    """A path that names a directory, a FIFO, a device or a socket: only regular files are read, since reading
    any other kind could block or never end."""


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
            raise NotARegularFile(f"{command.path}: not a regular file")
        fd = os.open(path, os.O_RDONLY)
    except (UnsafePath, NotARegularFile, OSError) as err:
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
        raise UnsafePath(f"{path!r}: outside the working directory")
    return full


def _describe(path: str, err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return f"{path}: no such file"
    if isinstance(err, OSError):
        return f"{path}: {err.strerror}"
    return str(err)
