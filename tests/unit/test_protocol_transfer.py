"""simplane._protocol.transfer: chunking on the sending side, offsets, checksums and the rename on the receiving."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from simplane._protocol.transfer import (
    CHUNK_BYTES,
    ChecksumMismatch,
    IncomingFile,
    OffsetMismatch,
    file_chunks,
)


def _chunks_of(data: bytes, path: Path) -> list:
    path.write_bytes(data)
    path.chmod(0o640)
    with path.open("rb") as file:
        return list(file_chunks("dir/name", file))


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 2 * CHUNK_BYTES])
def test_a_file_travels_in_whole_chunks_with_its_mode_first_and_checksum_last(tmp_path, size) -> None:
    data = os.urandom(size)
    chunks = _chunks_of(data, tmp_path / "source")
    assert b"".join(chunk.data for chunk in chunks) == data
    assert [chunk.offset for chunk in chunks] == [i * CHUNK_BYTES for i in range(len(chunks))]
    assert all(len(chunk.data) == CHUNK_BYTES for chunk in chunks[:-1])
    assert len(chunks) == max(1, -(-size // CHUNK_BYTES))  # an empty file is one empty chunk
    assert {chunk.path for chunk in chunks} == {"dir/name"}
    assert [chunk.mode for chunk in chunks] == [0o640] + [0] * (len(chunks) - 1)
    assert [chunk.sha256 for chunk in chunks] == [""] * (len(chunks) - 1) + [hashlib.sha256(data).hexdigest()]


def test_a_stored_checksum_and_mode_are_sent_as_given() -> None:
    chunks = list(file_chunks("a", io.BytesIO(b"changed on disk"), mode=0o600, sha256="recorded"))
    assert [(chunk.mode, chunk.sha256) for chunk in chunks] == [(0o600, "recorded")]


def test_a_received_file_takes_its_name_and_mode_only_once_its_checksum_matches(tmp_path) -> None:
    target = tmp_path / "new" / "folder" / "file"
    incoming = IncomingFile(target, 0o751)
    incoming.write(0, b"hello ")
    incoming.write(6, b"world")
    assert not target.exists()
    incoming.finish(hashlib.sha256(b"hello world").hexdigest().upper())
    assert target.read_bytes() == b"hello world"
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    assert incoming.size == 11
    assert os.listdir(target.parent) == ["file"]


def test_a_wrong_checksum_leaves_the_old_file_and_no_temporary_one(tmp_path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    incoming = IncomingFile(target, 0o644)
    incoming.write(0, b"new")
    with pytest.raises(ChecksumMismatch):
        incoming.finish(hashlib.sha256(b"other").hexdigest())
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]


@pytest.mark.parametrize("offset", [0, 2, 4])
def test_a_chunk_that_does_not_continue_the_file_is_refused(tmp_path, offset) -> None:
    incoming = IncomingFile(tmp_path / "file", 0o644)
    incoming.write(0, b"abc")
    with pytest.raises(OffsetMismatch, match=f"expected offset 3, got {offset}"):
        incoming.write(offset, b"d")
    incoming.discard()
    assert os.listdir(tmp_path) == []


def test_sent_chunks_received_make_the_same_file(tmp_path) -> None:
    data = os.urandom(CHUNK_BYTES + 5)
    chunks = _chunks_of(data, tmp_path / "source")
    incoming = IncomingFile(tmp_path / "copy", chunks[0].mode)
    for chunk in chunks:
        incoming.write(chunk.offset, chunk.data)
    incoming.finish(chunks[-1].sha256)
    assert (tmp_path / "copy").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "copy").stat().st_mode) == 0o640
