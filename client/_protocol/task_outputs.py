"""Where a task's outputs are kept: among its owner's stored files, under one folder per task."""

from __future__ import annotations


def outputs_prefix(task_id: str) -> str:
    """The storage prefix of the task's outputs; DownloadFiles with it fetches them."""
    return f"tasks/{task_id}/outputs/"
