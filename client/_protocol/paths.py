"""Relative paths that cannot leave the folder they are relative to.

The server accepts only clean ones (no '.', '..' or empty part, no backslash or NUL, not absolute) for what it
stores, and the agent and the client check every path they are sent against the same rule before they touch
the file system, so a hostile peer cannot write or read outside the folder it was given.
"""

from __future__ import annotations

from pathlib import PurePosixPath


class UnsafePath(ValueError):
    """A path that is not a clean relative path."""


def relative_path(path: str) -> PurePosixPath:
    """`path` as a clean relative path; raises UnsafePath otherwise."""
    parts = PurePosixPath(path).parts
    if (
        not path
        or path.startswith("/")
        or "\0" in path
        or "\\" in path
        or any(part in ("..", ".") for part in parts)
        or "/".join(parts) != path
    ):
        raise UnsafePath(f"{path!r} is not a clean relative path")
    return PurePosixPath(path)


def folder_prefix(prefix: str) -> str:
    """`prefix` if it names a folder of stored files: empty (the top) or a clean relative path and '/'."""
    if prefix == "":
        return prefix
    if not prefix.endswith("/"):
        raise UnsafePath(f"{prefix!r} must end with '/'")
    try:
        relative_path(prefix[:-1])
    except UnsafePath:
        raise UnsafePath(f"{prefix!r} is not a clean relative path") from None
    return prefix
