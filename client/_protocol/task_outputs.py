"""Where a task's outputs are kept: among its owner's stored files, under one folder per task."""

from __future__ import annotations

# The folder that holds every task's folder: tasks/<task id>/outputs/.
_TASKS_FOLDER = "tasks"


def outputs_prefix(task_id: str) -> str:
    """The storage prefix of the task's outputs; DownloadFiles with it fetches them."""
    return f"{_TASKS_FOLDER}/{task_id}/outputs/"


def task_id_of(prefix: str) -> str | None:
    """The id of the task whose folder holds the folder prefix `prefix` (tasks/<id>/ or a folder below it), or
    None for a prefix outside every task's folder (the top, "tasks/" itself, any other folder)."""
    parts = prefix.split("/")
    if len(parts) > 2 and parts[0] == _TASKS_FOLDER and parts[1]:
        return parts[1]
    return None
