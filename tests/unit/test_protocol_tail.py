"""simplane._protocol.tail: where the last N lines of a file start."""

from __future__ import annotations

import os

import pytest

from simplane._protocol.tail import BLOCK_BYTES, tail_offset


def _offset(tmp_path, data: bytes, lines: int, size: int | None = None) -> int:
    path = tmp_path / "file"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return tail_offset(fd, len(data) if size is None else size, lines)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("data", "lines", "expected"),
    [
        (b"", 3, b""),
        (b"a\nb\nc\n", 1, b"c\n"),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc\n", 3, b"a\nb\nc\n"),
        (b"a\nb\nc\n", 10, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),  # an unfinished last line counts as a line
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\n\n\n", 2, b"\n\n"),  # empty lines are lines
        (b"a\nb\n", 0, b""),
        (b"a\nb\n", -1, b""),
    ],
)
def test_the_tail_starts_at_the_first_of_the_last_lines(tmp_path, data, lines, expected) -> None:
    assert data[_offset(tmp_path, data, lines) :] == expected


def test_lines_longer_than_a_block_are_found_across_blocks(tmp_path) -> None:
    long_line = b"x" * (2 * BLOCK_BYTES + 7) + b"\n"
    data = b"first\n" + long_line + b"last\n"
    assert data[_offset(tmp_path, data, 2) :] == long_line + b"last\n"
    assert _offset(tmp_path, data, 3) == 0


def test_only_the_first_size_bytes_count(tmp_path) -> None:
    data = b"a\nb\nc\nwritten later\n"
    assert data[_offset(tmp_path, data, 1, size=6) : 6] == b"c\n"
