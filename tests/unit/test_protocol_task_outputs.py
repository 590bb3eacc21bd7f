"""simplane._protocol.task_outputs: the storage folder of a task's outputs."""

from __future__ import annotations

from simplane._protocol.paths import folder_prefix
from simplane._protocol.task_outputs import outputs_prefix, task_id_of


def test_a_tasks_outputs_are_a_clean_folder_of_its_own() -> None:
    assert outputs_prefix("t-123") == "tasks/t-123/outputs/"
    assert folder_prefix(outputs_prefix("t-123")) == "tasks/t-123/outputs/"


def test_a_prefix_inside_a_tasks_folder_names_the_task() -> None:
    assert task_id_of(outputs_prefix("t-123")) == "t-123"
    assert task_id_of("tasks/t-123/") == "t-123"
    assert task_id_of("tasks/t-123/outputs/sub/") == "t-123"


def test_a_prefix_outside_every_tasks_folder_names_none() -> None:
    for prefix in ("", "tasks/", "inputs/", "inputs/tasks/t-1/", "tasks-old/t-1/", "tasks//"):
        assert task_id_of(prefix) is None, prefix
