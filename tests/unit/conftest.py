"""The unit layer: the server's and client's pure modules, tested inside the pytest process in seconds.

`python -m pytest tests/unit` runs only these. A test here may use a temporary directory and a SQLite file, never a
server, an agent, the session's PostgreSQL or Chromium: asking for a fixture that starts one is an error at
collection, so the layer stays fast whatever `--database` says.
"""

from __future__ import annotations

from pathlib import Path

import pytest

PROCESS_FIXTURES = frozenset({"cluster", "cluster_factory", "postgres", "browser", "page"})
UNIT_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if UNIT_DIR not in item.path.parents:
            continue
        started = sorted(PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if started:
            raise pytest.UsageError(
                f"{item.nodeid} is a unit test but uses {', '.join(started)}: move it out of tests/unit"
            )
