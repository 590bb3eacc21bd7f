"""Exceptions raised by the simplane client, one class per gRPC status code.

    SimplaneError                 .code (the status code's name), .message (the server's words)
     ├── InvalidArgument          also a ValueError; .field and .violations name the bad request fields
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
import grpc to handle a failure. The server names the fields of an INVALID_ARGUMENT in the standard rich error
model (google.rpc.BadRequest field violations in the status details); they are read from there, never from the
message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

if TYPE_CHECKING:
    import grpc

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
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


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path in the request message (e.g. "cpus", "command[3]", "chunk.sha256")
    and what is wrong with it."""

    field: str
    description: str


class InvalidArgument(SimplaneError, ValueError):
    """A request the server (or the client, before sending it) refused; `violations` lists the bad fields the
    server named in the status details, empty when it named none."""

    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    @classmethod
    def of_field(cls, field: str, problem: str) -> InvalidArgument:
        """The client's own refusal of one field, worded and structured as the server's ("field: problem")."""
        return cls(f"{field}: {problem}", (FieldViolation(field, problem),))

    @property
    def field(self) -> str | None:
        """The path of the first bad field, or None when the error names no field."""
        return self.violations[0].field if self.violations else None


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
    import grpc

    if not isinstance(error, grpc.Call | grpc.aio.AioRpcError):
        return SimplaneError(str(error))  # not the error of a call: no status code to map
    code = error.code()
    name = code.name if code is not None else "UNKNOWN"
    message = error.details() or name
    if name == InvalidArgument.code:
        return InvalidArgument(message, _field_violations(error))
    return _BY_CODE.get(name, SimplaneError)(message)


def _field_violations(call: grpc.Call | grpc.aio.AioRpcError) -> list[FieldViolation]:
    """The google.rpc.BadRequest field violations in a failed call's status details (grpc-status-details-bin).

    Details whose code or message differ from the call's own are not the server's for this call, and are ignored.
    """
    from google.rpc import error_details_pb2, status_pb2
    from grpc_status import rpc_status

    try:
        # An AioRpcError has the code(), details() and trailing_metadata() that from_call reads.
        status: status_pb2.Status | None = rpc_status.from_call(cast("grpc.Call", call))
    except ValueError:
        return []
    violations = []
    for detail in status.details if status is not None else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return violations


@contextmanager
def translating_rpc_errors() -> Iterator[None]:
    """Turns any grpc.RpcError raised inside the block into the matching SimplaneError."""
    import grpc

    try:
        yield
    except grpc.RpcError as error:
        raise translate_rpc_error(error) from error
