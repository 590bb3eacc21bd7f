"""simplane._protocol.paths: which relative paths and folder prefixes are clean."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from simplane._protocol.paths import UnsafePath, folder_prefix, relative_path


@pytest.mark.parametrize("path", ["a", "a/b", "a.b/c..d", ".hidden/x", "..x", "x.."])
def test_clean_relative_paths_are_accepted(path) -> None:
    assert relative_path(path) == PurePosixPath(path)


@pytest.mark.parametrize(
    "path", ["", "/", "/etc/passwd", "..", "../x", "a/../b", "a/..", ".", "./a", "a/./b", "a//b", "a/", "a\\b", "a\0b"]
)
def test_paths_that_could_leave_their_folder_or_are_not_normalised_are_refused(path) -> None:
    with pytest.raises(UnsafePath, match="is not a clean relative path"):
        relative_path(path)


@pytest.mark.parametrize("prefix", ["", "a/", "a/b/"])
def test_a_folder_prefix_is_empty_or_a_clean_path_and_a_slash(prefix) -> None:
    assert folder_prefix(prefix) == prefix


def test_a_prefix_without_its_slash_is_refused_saying_so() -> None:
    with pytest.raises(UnsafePath, match="must end with '/'"):
        folder_prefix("a")


@pytest.mark.parametrize("prefix", ["/", "//", "../", "a//", "/a/", "a/./"])
def test_an_unclean_prefix_is_refused(prefix) -> None:
    with pytest.raises(UnsafePath, match="is not a clean relative path"):
        folder_prefix(prefix)
