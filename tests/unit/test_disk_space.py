"""disk_space: a write refused for want of space marks the data dir full until a check finds room again."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from simplane.server.disk_space import DataDirSpace


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_write_refused_for_space_marks_the_data_dir_full(tmp_path: Path, code: int) -> None:
    space = DataDirSpace(tmp_path)
    assert space.refused(OSError(code, "no space")) is True
    assert space.full


def test_other_write_errors_are_not_about_space(tmp_path: Path) -> None:
    space = DataDirSpace(tmp_path)
    assert space.refused(OSError(errno.EIO, "input/output error")) is False
    assert space.refused(PermissionError(errno.EACCES, "denied")) is False
    assert not space.full


def test_the_next_successful_write_finds_room_again(tmp_path: Path) -> None:
    space = DataDirSpace(tmp_path)
    space.refused(OSError(errno.ENOSPC, "no space"))
    space.wrote()  # the temporary directory has room
    assert not space.full
    space.require()


def test_require_passes_while_there_is_room(tmp_path: Path) -> None:
    space = DataDirSpace(tmp_path)
    space.require()
    assert not space.full
