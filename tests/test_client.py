"""The client's public surface, each test run against both simplane.Client and simplane.AsyncClient.

A test is written once against `flavour`: `flavour.run(x)` is x on the blocking client and awaits x on the
asyncio one (and fails if either side answers the other way), so the two clients are held to the same methods,
properties and deadlines. The module shares one cluster; each flavour has one client (the asyncio one on its
own event loop).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster
from postgres import PostgresServer
from programs import SLEEP_60, python

import simplane
from simplane import _async, _sync

PRODUCER = python(
    "import sys\nfor i in range(200):\n    print(f'out {i}')\n    print(f'err {i}', file=sys.stderr)\nsys.exit(3)"
)
SOLVER = python(
    "import pathlib\npathlib.Path('out').mkdir()\npathlib.Path('out/twice.txt').write_text(2 * open('x').read())"
)


class Flavour:
    """One client, driven from plain test code whichever its flavour."""

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.client = client
        self.loop = loop

    def __repr__(self) -> str:
        return type(self.client).__name__

    def run(self, value: Any) -> Any:
        """The value of a call or property: awaited on the asyncio client, as is on the blocking one."""
        assert inspect.isawaitable(value) == (self.loop is not None), f"{value!r} from {self!r}"
        return value if self.loop is None else self.loop.run_until_complete(value)

    def collect(self, items: Iterator[Any] | AsyncIterator[Any]) -> list[Any]:
        if self.loop is None:
            assert isinstance(items, Iterator)
            return list(items)
        assert isinstance(items, AsyncIterator)

        async def gather() -> list[Any]:
            return [item async for item in items]

        return self.loop.run_until_complete(gather())

    def first(self, items: Iterator[Any] | AsyncIterator[Any], matching: Callable[[Any], bool]) -> Any:
        """The first item that matches; the iterator is closed after it."""
        if self.loop is None:
            assert isinstance(items, Iterator)
            try:
                return next(item for item in items if matching(item))
            finally:
                items.close()  # type: ignore[attr-defined]  # the client's iterators are generators
        assert isinstance(items, AsyncIterator)

        async def find() -> Any:
            try:
                async for item in items:
                    if matching(item):
                        return item
            finally:
                await items.aclose()  # type: ignore[attr-defined]  # the client's iterators are generators

        return self.loop.run_until_complete(find())

    def make_client(self, **kwargs: Any) -> Any:
        """Another client of the same flavour (closed by the caller)."""
        return type(self.client)(**kwargs)

    def close(self, client: Any) -> None:
        self.run(client.close())


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer | None) -> Iterator[Cluster]:
    """One `simplane up` with a local agent for the whole module."""
    database_url, name = None, None
    if postgres is not None:
        name, database_url = postgres.create_database()
    cluster = Cluster(tmp_path_factory.mktemp("client"), agents=1, database_url=database_url)
    try:
        yield cluster.start()
    finally:
        cluster.close()
        print(f"--- output of the cluster in {cluster.root}\n{cluster.output()}")
        if postgres is not None and name is not None:
            postgres.drop_database(name)


@pytest.fixture(scope="module", params=["Client", "AsyncClient"])
def flavour(request: pytest.FixtureRequest, shared_cluster: Cluster) -> Iterator[Flavour]:
    loop = asyncio.new_event_loop() if request.param == "AsyncClient" else None
    client = getattr(simplane, request.param)(address=shared_cluster.address, api_key=shared_cluster.api_key)
    driver = Flavour(client, loop)
    try:
        yield driver
    finally:
        driver.close(client)
        if loop is not None:
            loop.close()


def test_both_clients_have_the_same_methods_and_properties() -> None:
    pairs = [(_sync.__all__, _async.__all__)] + [
        (dir(getattr(_sync, name)), dir(getattr(_async, f"Async{name}"))) for name in _sync.__all__
    ]
    for sync_names, async_names in pairs:
        assert [name for name in sync_names if not name.startswith("_")] == [
            name.removeprefix("Async") for name in async_names if not name.startswith("_")
        ]


def test_submit_follow_wait_info_and_properties(flavour: Flavour) -> None:
    tasks = flavour.client.tasks
    task = flavour.run(tasks.submit(PRODUCER, name="both", project="client-test", env={"A": "1"}))
    assert task.id.startswith("t-") and repr(task) == f"{repr(flavour).replace('Client', 'Task')}({task.id!r})"
    assert task.last_info is not None and task.last_info.name == "both"

    lines = flavour.collect(task.logs(follow=True))
    assert [line.text for line in lines if line.stream == "stdout"] == [f"out {i}" for i in range(200)]
    assert [line.text for line in lines if line.stream == "stderr"] == [f"err {i}" for i in range(200)]
    assert flavour.run(task.wait(timeout=30)) == simplane.TaskStatus.FAILED
    assert flavour.run(task.status) == simplane.TaskStatus.FAILED
    assert flavour.run(task.exit_code) == 3

    info = flavour.run(task.info())
    assert (info.id, info.name, info.project, info.exit_code) == (task.id, "both", "client-test", 3)
    assert info.history[-1].status == simplane.TaskStatus.FAILED
    assert task.last_info == info


def test_logs_tail_streams_and_get(flavour: Flavour) -> None:
    task = flavour.run(flavour.client.tasks.submit(PRODUCER, project="client-tail"))
    assert flavour.run(task.wait(timeout=30)) == simplane.TaskStatus.FAILED

    again = flavour.run(flavour.client.tasks.get(task.id))
    assert again.id == task.id and again.last_info.status == simplane.TaskStatus.FAILED
    handle = flavour.client.task(task.id)  # no call
    assert handle.last_info is None
    assert [line.text for line in flavour.collect(handle.logs(stream="stdout", lines=2))] == ["out 198", "out 199"]
    stderr = flavour.collect(handle.logs(stream="stderr"))
    assert [line.text for line in stderr] == [f"err {i}" for i in range(200)]
    assert {line.stream for line in stderr} == {"stderr"}


def test_list_and_watch(flavour: Flavour) -> None:
    project = f"client-list-{flavour!r}"
    submitted = [flavour.run(flavour.client.tasks.submit(["true"], project=project)) for _ in range(3)]
    for task in submitted:
        assert flavour.run(task.wait(timeout=30)) == simplane.TaskStatus.SUCCEEDED

    listed = flavour.collect(flavour.client.tasks.list(project=project, page_size=2))
    assert [info.id for info in listed] == [task.id for task in reversed(submitted)]
    assert len(flavour.collect(flavour.client.tasks.list(project=project, limit=1))) == 1
    assert flavour.collect(flavour.client.tasks.list(project=project, status="RUNNING")) == []

    states = flavour.collect(submitted[0].watch())
    assert states[-1].status == simplane.TaskStatus.SUCCEEDED
    end = flavour.first(flavour.client.tasks.watch(project=project), lambda event: event.type == "snapshot_end")
    assert end.revision > 0


def test_upload_download_inputs_and_outputs(flavour: Flavour, tmp_path: Path) -> None:
    source = tmp_path / "case"
    (source / "sub").mkdir(parents=True)
    (source / "x").write_text("ab")
    (source / "sub" / "y.bin").write_bytes(bytes(range(256)) * 5000)
    progress: list[tuple[int, int]] = []

    prefix = flavour.run(flavour.client.storage.upload(source, progress=lambda *done: progress.append(done)))
    assert prefix.startswith("inputs/") and progress[0][0] == 0 and progress[-1] == (1_280_002, 1_280_002)
    stored = flavour.run(flavour.client.storage.list(prefix))
    assert sorted((file.path, file.size) for file in stored) == [(f"{prefix}sub/y.bin", 1_280_000), (f"{prefix}x", 2)]
    written = flavour.run(flavour.client.storage.download(prefix, tmp_path / "back"))
    assert sorted(path.relative_to(tmp_path / "back").as_posix() for path in written) == ["sub/y.bin", "x"]
    assert (tmp_path / "back" / "sub" / "y.bin").read_bytes() == (source / "sub" / "y.bin").read_bytes()

    task = flavour.run(flavour.client.tasks.submit(SOLVER, inputs=source))
    assert flavour.run(task.wait(timeout=30)) == simplane.TaskStatus.SUCCEEDED
    assert "out/twice.txt" in [file.path for file in flavour.run(task.list_files())]
    outputs = flavour.run(task.download_outputs(tmp_path / "outputs"))
    assert [path.read_text() for path in outputs if path.name == "twice.txt"] == ["abab"]


def test_a_failing_progress_callback_is_raised_as_itself(flavour: Flavour, tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x" * 3_000_000)

    def progress(done: int, total: int) -> None:
        if done > 0:
            raise OSError("the progress bar broke")

    with pytest.raises(OSError, match="progress bar broke"):
        flavour.run(flavour.client.storage.upload(tmp_path / "file", progress=progress))


def test_wait_has_a_deadline_and_kill_stops_the_task(flavour: Flavour) -> None:
    task = flavour.run(flavour.client.tasks.submit(SLEEP_60))
    try:
        started = time.monotonic()
        with pytest.raises(simplane.Timeout, match=task.id):
            flavour.run(task.wait(timeout=1))
        assert time.monotonic() - started < 10
    finally:
        killed = flavour.run(task.kill(grace_period="5s"))
    assert killed.id == task.id
    assert flavour.run(task.wait(timeout=30)) == simplane.TaskStatus.KILLED
    assert flavour.run(task.status) == simplane.TaskStatus.KILLED
    with pytest.raises(simplane.FailedPrecondition):
        flavour.run(task.kill())


def test_errors_are_typed(flavour: Flavour) -> None:
    unknown = "t-00000000000000000000000000"
    with pytest.raises(simplane.NotFound, match=unknown):
        flavour.run(flavour.client.tasks.get(unknown))
    with pytest.raises(simplane.InvalidArgument, match="cpus"):
        flavour.run(flavour.client.tasks.submit(["true"], cpus=-1))
    with pytest.raises(simplane.InvalidArgument, match="lines"):
        flavour.client.task(unknown).logs(lines=0)

    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    nowhere = flavour.make_client(address=address, api_key="key", retry_timeout=0)
    with pytest.raises(simplane.Unavailable):
        flavour.run(nowhere.account.whoami())
    flavour.close(nowhere)
    with pytest.raises(RuntimeError, match="closed"):
        flavour.run(nowhere.account.whoami())


def test_account_and_machine_groups(flavour: Flavour) -> None:
    me = flavour.run(flavour.client.account.whoami())
    key, secret = flavour.run(flavour.client.account.create_api_key(f"client test {flavour!r}"))
    assert secret and key.id in [k.id for k in flavour.run(flavour.client.account.list_api_keys())]
    assert flavour.run(flavour.client.account.revoke_api_key(key.id)).id == key.id
    assert me.admin
    assert "local" in [group.name for group in flavour.run(flavour.client.machine_groups.list())]
    assert len(flavour.run(flavour.client.machine_groups.machines("local"))) == 1
