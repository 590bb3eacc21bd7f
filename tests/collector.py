"""Consume a stream in a background thread while the test does something else to the cluster."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class BackgroundCollector:
    """Collects what an iterable yields, in a daemon thread, keeping the error that ended it."""

    def __init__(self, iterable: Iterable) -> None:
        self.items: list = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._collect, args=(iterable,), daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self.items)

    def _collect(self, iterable: Iterable) -> None:
        try:
            for item in iterable:
                self.items.append(item)
        except BaseException as error:
            self.error = error

    def join(self, timeout: float) -> list:
        """Wait for the stream to end; fail if it doesn't in time or ended with an error."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not end within {timeout} s ({len(self)} items)"
        if self.error is not None:
            raise AssertionError(f"the stream failed after {len(self)} items") from self.error
        return self.items
