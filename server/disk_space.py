"""Whether the server's data dir has room: one state, logged once when it fills and once when space returns.

A write that fails for want of space marks the data dir full; it is free again once a check (one `statvfs`, made
by the next write that succeeds or the next submit) finds room. Requests that would only add to a full disk
(submits, uploads) check first and are refused at once, instead of waiting on a write that cannot succeed.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from simplane.server import errors

log = logging.getLogger(__name__)

NO_SPACE = "no space left on the server's data dir"
OUTPUT_HELD = "the server's data dir is full; output is held on the machine until space returns"
# Below this much free space the data dir counts as full for new work: a submit or an upload would only fail
# later, halfway through.
RESERVE_BYTES = 1024 * 1024
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DataDirSpace:
    def __init__(self, path: Path) -> None:
        self._path = path
        self.full = False

    def refused(self, error: OSError) -> bool:
        """Whether a failed write failed for want of space; if so the data dir is now full."""
        if error.errno not in _NO_SPACE_ERRNOS:
            return False
        self._mark_full()
        return True

    def wrote(self) -> None:
        """A write succeeded; if the data dir was full, it is free again once it has RESERVE_BYTES free (a small
        write can still fit in a block a file already has)."""
        if self.full:
            self._measure()

    def require(self) -> None:
        """Raises ResourceExhausted while the data dir has less than RESERVE_BYTES free."""
        self._measure()
        if self.full:
            raise errors.ResourceExhausted(NO_SPACE)

    def _measure(self) -> None:
        stats = os.statvfs(self._path)
        # Root may write into the blocks a filesystem reserves for it; anyone else may not.
        blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
        if blocks * stats.f_frsize < RESERVE_BYTES:
            self._mark_full()
        elif self.full:
            self._mark_free()

    def _mark_full(self) -> None:
        if not self.full:
            self.full = True
            log.warning(
                "the data dir %s is full: submits and uploads are refused, and task output waits on the machines "
                "until space returns",
                self._path,
            )

    def _mark_free(self) -> None:
        self.full = False
        log.warning("the data dir %s has space again: submits, uploads and task output are accepted", self._path)
