"""Fixtures: real `simplane up` processes on SQLite (default) or on a PostgreSQL the session starts.

python -m pytest -q                          # SQLite file in each test's data dir
python -m pytest -q --database postgresql    # one PostgreSQL, a fresh database per cluster
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import installed_package
import pytest
from cluster import Cluster
from postgres import PostgresServer
from slurm import PACKAGES, SlurmCluster, missing_binaries

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run on an installed package that lacks a module of this checkout (tests/installed_package.py)."""
    problem = installed_package.problem()
    if problem is not None:
        raise pytest.UsageError(problem)


# The unit layer (tests/unit: pure modules in this process, in seconds) may use a temporary directory and a SQLite
# file, never a server, an agent, the session's PostgreSQL or Slurm, or Chromium: asking for a fixture that starts one is an
# error at collection, so the layer stays fast whatever --database says.
UNIT_TESTS = Path(__file__).parent / "unit"
PROCESS_FIXTURES = frozenset({"cluster", "cluster_factory", "postgres", "slurm", "browser", "page"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if UNIT_TESTS not in item.path.parents:
            continue
        started = sorted(PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if started:
            raise pytest.UsageError(
                f"{item.nodeid} is a unit test but uses {', '.join(started)}: move it out of tests/unit"
            )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the database the clusters use (default: sqlite)",
    )


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer | None]:
    """The session's PostgreSQL server, or None when the tests run on SQLite."""
    if request.config.getoption("--database") != "postgresql":
        yield None
        return
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A single-node Slurm cluster (tests/slurm.py), started by the first test that asks for it and stopped at the
    end of the session; skipped where the Slurm packages are not installed (CI installs them)."""
    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm is not installed (no {', '.join(missing)}): apt-get install {PACKAGES}")
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path, postgres: PostgresServer | None) -> Iterator[Callable[..., Cluster]]:
    """Start clusters with non-default settings: `cluster_factory(agents=0)`.

    Each cluster gets its own data dir and, on PostgreSQL, its own database; all are torn down after
    the test, and the servers' output is printed so that a failed test shows it.
    """
    clusters: list[Cluster] = []
    databases: list[str] = []

    def start(*, agents: int = 1, env: dict[str, str] | None = None) -> Cluster:
        database_url = None
        if postgres is not None:
            name, database_url = postgres.create_database()
            databases.append(name)
        cluster = Cluster(tmp_path / f"cluster-{len(clusters) + 1}", agents=agents, database_url=database_url, env=env)
        clusters.append(cluster)
        return cluster.start()

    try:
        yield start
    finally:
        for cluster in clusters:
            cluster.close()
            print(f"--- output of the cluster in {cluster.root}\n{cluster.output()}")
        if postgres is not None:
            for name in databases:
                postgres.drop_database(name)


@pytest.fixture
def cluster(cluster_factory: Callable[..., Cluster]) -> Cluster:
    """`simplane up` with one local agent."""
    return cluster_factory()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for a module; each test opens its own context (fresh storage). Not for the session:
    Playwright's sync API keeps an event loop running on the main thread while it is open, and asyncio.run in any
    later test would refuse to start."""
    from browser import launch
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    """A page in a fresh browser context; console errors are collected in `page.errors` (an attribute added here,
    hence Any)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page: Any = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
