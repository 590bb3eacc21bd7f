"""simplane: run simulations on machine groups.

    import simplane
    client = simplane.Client()
    task = client.tasks.submit(["python", "solve.py"], inputs="case/", time_to_live="10m")
    for line in task.logs(follow=True):
        print(line.stream, line.text)
    status = task.wait()    # simplane.TaskStatus.SUCCEEDED, .FAILED, ...

The clients load grpc and the generated stubs on first use, so `import simplane` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from simplane.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    SimplaneError,
    Timeout,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from simplane.models import (
    ApiKey,
    LogLine,
    MachineGroupInfo,
    MachineInfo,
    StatusTransition,
    StoredFile,
    TaskEvent,
    TaskFile,
    TaskInfo,
    TaskMetrics,
    TaskStatus,
    User,
)

if TYPE_CHECKING:
    from simplane._async import AsyncClient, AsyncTask
    from simplane._sync import Client, Task

__all__ = [
    "Aborted",
    "AlreadyExists",
    "ApiKey",
    "AsyncClient",
    "AsyncTask",
    "Cancelled",
    "Client",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "LogLine",
    "MachineGroupInfo",
    "MachineInfo",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "SimplaneError",
    "StatusTransition",
    "StoredFile",
    "Task",
    "TaskEvent",
    "TaskFile",
    "TaskInfo",
    "TaskMetrics",
    "TaskStatus",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "User",
]

_LAZY = {
    "Client": "simplane._sync",
    "Task": "simplane._sync",
    "AsyncClient": "simplane._async",
    "AsyncTask": "simplane._async",
}


def __getattr__(name: str) -> Any:
    """Loads the clients (and with them grpc) only when one is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simplane' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
