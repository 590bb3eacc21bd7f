"""Where a tail of the last N lines starts, found by reading a file backwards only as far as needed."""

from __future__ import annotations

import os

# How much is read at a time going backwards.
BLOCK_BYTES = 64 * 1024


def tail_offset(fd: int, size: int, lines: int) -> int:
    """Where the last `lines` lines of the first `size` bytes of an open file start.

    A newline at the very end closes the last line rather than starting an empty one; `lines` of 0 or less is
    the end itself.
    """
    position = size
    if position == 0 or lines <= 0:
        return position
    wanted = lines + 1 if os.pread(fd, 1, position - 1) == b"\n" else lines
    while position > 0:
        start = max(0, position - BLOCK_BYTES)
        block = os.pread(fd, position - start, start)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            wanted -= 1
            if wanted == 0:
                return start + index + 1
        position = start
    return 0
