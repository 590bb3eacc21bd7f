"""Exceptions raised by the simplane client, one class per gRPC status code.

    SimplaneError                 .code (the status code's name), .message (the server's words)
     ├── InvalidArgument          also a ValueError
     ├── NotFound
     ├── AlreadyExists
     ├── PermissionDenied
     ├── Unauthenticated
     ├── FailedPrecondition
     ├── ResourceExhausted
     ├── OutOfRange
     ├── Unavailable
     ├── DeadlineExceeded
     ├── Cancelled
     ├── Aborted
     ├── Unimplemented
     ├── Internal
     ├── DataLoss
     └── Timeout                  also a TimeoutError: a client-side wait ran out of time

gRPC errors become these in one place, `translate_rpc_error`, chained with `from`, so callers never need to
import grpc to handle a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "SimplaneError",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]


class SimplaneError(Exception):
    """The root of every error the client raises."""

    code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(SimplaneError, ValueError):
    code = "INVALID_ARGUMENT"


class NotFound(SimplaneError):
    code = "NOT_FOUND"


class AlreadyExists(SimplaneError):
    code = "ALREADY_EXISTS"


class PermissionDenied(SimplaneError):
    code = "PERMISSION_DENIED"


class Unauthenticated(SimplaneError):
    code = "UNAUTHENTICATED"


class FailedPrecondition(SimplaneError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(SimplaneError):
    code = "RESOURCE_EXHAUSTED"


class OutOfRange(SimplaneError):
    code = "OUT_OF_RANGE"


class Unavailable(SimplaneError):
    code = "UNAVAILABLE"


class DeadlineExceeded(SimplaneError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(SimplaneError):
    code = "CANCELLED"


class Aborted(SimplaneError):
    code = "ABORTED"


class Unimplemented(SimplaneError):
    code = "UNIMPLEMENTED"


class Internal(SimplaneError):
    code = "INTERNAL"


class DataLoss(SimplaneError):
    code = "DATA_LOSS"


class Timeout(SimplaneError, TimeoutError):
    """A wait (e.g. `Task.wait(timeout=...)`) ended before the awaited condition held."""

    code = "DEADLINE_EXCEEDED"


_BY_CODE: dict[str, type[SimplaneError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        FailedPrecondition,
        ResourceExhausted,
        OutOfRange,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Aborted,
        Unimplemented,
        Internal,
        DataLoss,
    )
}


def translate_rpc_error(error: Exception) -> SimplaneError:
    """The SimplaneError for a grpc.RpcError (sync or aio); its message is the server's details.

    Raise the result `from error` so the original stays attached.
    """
    code = error.code()  # type: ignore[attr-defined]
    name = code.name if code is not None else "UNKNOWN"
    message = error.details() or name  # type: ignore[attr-defined]
    return _BY_CODE.get(name, SimplaneError)(message)


@contextmanager
def translating_rpc_errors() -> Iterator[None]:
    """Turns any grpc.RpcError raised inside the block into the matching SimplaneError."""
    import grpc

    try:
        yield
    except grpc.RpcError as error:
        raise translate_rpc_error(error) from error
