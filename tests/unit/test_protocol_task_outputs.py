"""simplane._protocol.task_outputs: the storage folder of a task's outputs."""

from __future__ import annotations

from simplane._protocol.paths import folder_prefix
from simplane._protocol.task_outputs import outputs_prefix


def test_a_tasks_outputs_are_a_clean_folder_of_its_own() -> None:
    assert outputs_prefix("t-123") == "tasks/t-123/outputs/"
    assert folder_prefix(outputs_prefix("t-123")) == "tasks/t-123/outputs/"
