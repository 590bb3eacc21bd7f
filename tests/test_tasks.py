"""Submitting tasks through the Python client: inputs, outputs, status history, metrics, listing and paging."""

from __future__ import annotations

from datetime import timedelta

from programs import python

import simplane
from simplane._api.v1 import task_pb2, task_pb2_grpc

LIFECYCLE = [
    simplane.TaskStatus.SUBMITTED,
    simplane.TaskStatus.QUEUED,
    simplane.TaskStatus.PREPARING,
    simplane.TaskStatus.RUNNING,
    simplane.TaskStatus.FINALIZING,
]

SOLVER = """
import os, pathlib
data = int(open('data.txt').read())
print('data', data)
print('more', open(os.path.join('sub', 'more.txt')).read().strip())
pathlib.Path('out').mkdir()
pathlib.Path('out/result.txt').write_text(str(2 * data))
"""


def test_submit_with_inputs_then_logs_wait_and_download(cluster, tmp_path) -> None:
    inputs = tmp_path / "case"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "data.txt").write_text("21")
    (inputs / "sub" / "more.txt").write_text("nested\n")
    client = cluster.client()

    task = client.tasks.submit(
        python(SOLVER), inputs=str(inputs), machine_group="local", name="cavity", project="demo", time_to_live="10m"
    )
    assert task.id.startswith("t-")
    lines = [(line.stream, line.text) for line in task.logs(follow=True)]
    assert ("stdout", "data 21") in lines
    assert ("stdout", "more nested") in lines
    assert task.wait() == simplane.TaskStatus.SUCCEEDED
    assert task.exit_code == 0

    target = tmp_path / "results"
    task.download_outputs(str(target))
    assert [path.read_text() for path in target.rglob("result.txt")] == ["42"]
    assert any(file.path.endswith("result.txt") for file in task.list_files())

    info = task.info()
    assert (info.name, info.project, info.machine_group) == ("cavity", "demo", "local")
    assert info.time_to_live == timedelta(minutes=10)
    assert info.metrics.input_files == 2
    assert info.metrics.input_bytes == len("21") + len("nested\n")
    assert info.metrics.output_files >= 1
    assert info.metrics.output_bytes >= len("42")


def test_status_history_is_recorded_in_order_with_metrics(cluster) -> None:
    task = cluster.client().tasks.submit(["true"])
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    info = task.info()
    assert info.status == simplane.TaskStatus.SUCCEEDED
    assert [entry.status for entry in info.history] == [*LIFECYCLE, simplane.TaskStatus.SUCCEEDED]
    times = [entry.time for entry in info.history]
    assert times == sorted(times)
    assert info.attempt == 1
    assert info.exit_code == 0
    assert info.machine_id
    metrics = info.metrics
    parts = [metrics.queued, metrics.preparing, metrics.computing, metrics.finalizing]
    assert all(timedelta(0) <= part <= metrics.total for part in parts), metrics
    assert abs(metrics.total - (times[-1] - times[0])) < timedelta(milliseconds=1)
    assert abs(metrics.total - sum(parts, timedelta(0))) < timedelta(milliseconds=1)


def test_failed_task_reports_exit_code(cluster) -> None:
    task = cluster.client().tasks.submit(python("import sys; sys.exit(7)"))
    assert task.wait(timeout=30) == simplane.TaskStatus.FAILED
    assert task.exit_code == 7
    assert task.info().history[-1].status == simplane.TaskStatus.FAILED


def test_unstartable_command_fails_with_detail(cluster) -> None:
    task = cluster.client().tasks.submit(["/nonexistent/solver"])
    assert task.wait(timeout=30) == simplane.TaskStatus.FAILED
    assert "/nonexistent/solver" in task.info().error


def test_env_and_cpus_reach_the_task(cluster) -> None:
    task = cluster.client().tasks.submit(python("import os; print(os.environ['CASE'])"), env={"CASE": "c1"}, cpus=1)
    assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert [line.text for line in task.logs()] == ["c1"]


def test_get_returns_the_same_task(cluster) -> None:
    client = cluster.client()
    task = client.tasks.submit(["true"], name="same")
    again = client.tasks.get(task.id)
    assert again.id == task.id
    assert again.info().name == "same"


def test_client_list_filters_by_project(cluster_factory) -> None:
    client = cluster_factory(agents=0).client()
    ours = [client.tasks.submit(["true"], project="ours").id for _ in range(3)]
    client.tasks.submit(["true"], project="theirs")
    assert [info.id for info in client.tasks.list(project="ours")] == ours[::-1]


def list_all(stub, metadata, page_size: int, **filters) -> list[list[str]]:
    """Page through ListTasks; returns the ids of each page."""
    pages, token = [], ""
    while True:
        response = stub.ListTasks(
            task_pb2.ListTasksRequest(page_size=page_size, page_token=token, **filters), metadata=metadata, timeout=10
        )
        pages.append([task.id for task in response.tasks])
        token = response.next_page_token
        if not token:
            return pages


def test_keyset_paging_is_newest_first_without_gaps_or_repeats(cluster_factory) -> None:
    cluster = cluster_factory(agents=0)  # tasks stay queued: listing needs no agent
    client = cluster.client()
    submitted = [client.tasks.submit(["true"], name=f"n{i}").id for i in range(23)]
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)

    pages = list_all(stub, cluster.metadata(), page_size=5)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [task_id for page in pages for task_id in page] == submitted[::-1]

    # Tasks submitted while paging don't shift the pages still to come.
    first = stub.ListTasks(task_pb2.ListTasksRequest(page_size=5), metadata=cluster.metadata(), timeout=10)
    client.tasks.submit(["true"])
    second = stub.ListTasks(
        task_pb2.ListTasksRequest(page_size=5, page_token=first.next_page_token),
        metadata=cluster.metadata(),
        timeout=10,
    )
    assert [task.id for task in [*first.tasks, *second.tasks]] == submitted[::-1][:10]


def test_list_filters(cluster) -> None:
    client = cluster.client()
    ok = client.tasks.submit(["true"], project="a")
    failed = client.tasks.submit(["false"], project="b")
    running = client.tasks.submit(["sleep", "60"], project="a")
    assert ok.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED
    assert failed.wait(timeout=30) == simplane.TaskStatus.FAILED
    stub = cluster.stub(task_pb2_grpc.TaskServiceStub)

    def ids(**filters) -> list[str]:
        return [task_id for page in list_all(stub, cluster.metadata(), page_size=100, **filters) for task_id in page]

    assert ids() == [running.id, failed.id, ok.id]
    assert ids(statuses=[task_pb2.TASK_STATUS_FAILED]) == [failed.id]
    assert ids(statuses=[task_pb2.TASK_STATUS_SUCCEEDED, task_pb2.TASK_STATUS_FAILED]) == [failed.id, ok.id]
    assert ids(project="a") == [running.id, ok.id]
    assert ids(project="a", statuses=[task_pb2.TASK_STATUS_SUCCEEDED]) == [ok.id]
    assert ids(machine_group="local") == [running.id, failed.id, ok.id]

    middle = stub.GetTask(task_pb2.GetTaskRequest(task_id=failed.id), metadata=cluster.metadata(), timeout=10).task
    assert ids(created_after=middle.create_time) == [running.id, failed.id]
    assert ids(created_before=middle.create_time) == [ok.id]
    running.kill()


def test_search_matches_an_id_prefix_or_part_of_the_name_case_insensitively(cluster) -> None:
    client = cluster.client()
    cavity = client.tasks.submit(["true"], name="Cavity_100%")
    pipe = client.tasks.submit(["true"], name="pipe-flow")
    for task in (cavity, pipe):
        assert task.wait(timeout=30) == simplane.TaskStatus.SUCCEEDED

    def found(text: str) -> list[str]:
        return [info.id for info in client.tasks.list(search=text)]

    assert found("cavity") == [cavity.id]
    assert found("FLOW") == [pipe.id]
    assert found(pipe.id) == [pipe.id]
    assert set(found(pipe.id[:5])) == {cavity.id, pipe.id}  # IDs start alike: a short prefix matches both
    # LIKE wildcards in the text are matched literally.
    assert found("_100%") == [cavity.id]
    assert found("%") == [cavity.id]
    assert found("nothing-like-this") == []
