"""The one table from domain errors to gRPC status codes, and the decorators that apply it at the edge.

Every servicer method is wrapped by `unary` or `streaming`: the servicer's `authorize(context)` names the
caller, which the method receives as its last argument, every request message (each one of a stream too) is
checked against request_limits, and domain errors become their status code. `TolerantDecoding`, installed on
the server, turns request bytes that do not decode into an `Undecodable` the decorators refuse as
INVALID_ARGUMENT, where grpc.aio would answer UNKNOWN and log a traceback.

INVALID_ARGUMENT carries its field in the standard rich error model: a google.rpc.Status holding a
google.rpc.BadRequest field violation, in the `grpc-status-details-bin` trailer, so that clients read the field
from there and never from the message (docs/errors.md).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from simplane.server import errors, request_limits

STATUS_CODES: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}

T = TypeVar("T")
Request = TypeVar("Request")
Response = TypeVar("Response")
log = logging.getLogger(__name__)
# The methods whose requests decode tolerantly: simplane's own services (not health checking or reflection).
_OWN_METHODS = "/simplane."


class Undecodable:
    """Stands in for request bytes that are not a message of the method's request type."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


class TolerantDecoding(grpc.aio.ServerInterceptor):
    """Gives simplane's methods a request deserializer that returns an Undecodable instead of raising."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Request, Response] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Request, Response] | None:
        method = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(_OWN_METHODS) or handler.request_deserializer is None:
            return handler
        # At run time a handler is a namedtuple; the stubs declare an abstract class without _replace.
        tolerant: grpc.RpcMethodHandler[Request, Response] = handler._replace(  # type: ignore[attr-defined]
            request_deserializer=_tolerant(handler.request_deserializer)
        )
        self._handlers[method] = tolerant
        return tolerant


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # DecodeError, or whatever else the parser raises on hostile bytes
            return Undecodable(f"undecodable request bytes ({error})")

    return decode


def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """The request, once it is known to decode and to lie within request_limits; a stream is checked as read."""
    if isinstance(request, Undecodable):
        raise errors.InvalidArgument("request", request.problem)
    if isinstance(request, Message):
        request_limits.check(request)
        return request
    return _checked_stream(request, context)


async def _checked_stream(
    messages: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    """Ends the call at the first bad message with its status, even where the stream is read by a task of the
    servicer's own (the agents' Connect), which would otherwise end the call without saying why."""
    async for message in messages:
        try:
            message = checked(message, context)
        except errors.DomainError as error:
            await abort(context, error)
        yield message


def status_code(error: errors.DomainError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


def bad_request_status(error: errors.InvalidArgument) -> status_pb2.Status:
    """The google.rpc.Status of an InvalidArgument: its code and message, and its field as a BadRequest."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.problem)
    detail = AnyMessage()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return status_pb2.Status(code=status_code(error).value[0], message=error.message, details=[detail])


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: errors.DomainError) -> NoReturn:
    """Ends the call with the error's status; an InvalidArgument's field goes along as a google.rpc.BadRequest
    in the grpc-status-details-bin trailer (other errors have no details to send).

    The AbortError raised has `error` as its cause, so that code which sees the abort (agent_protocol.py, whose
    reader task reads a checked stream) can tell why the call ended."""
    try:
        if isinstance(error, errors.InvalidArgument):
            await context.abort_with_status(rpc_status.to_status(bad_request_status(error)))
        await context.abort(status_code(error), error.message)
    except grpc.aio.AbortError as aborted:
        raise aborted from error


def unary(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Wraps a unary (or client-streaming) servicer method: domain errors become their status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> T:
        try:
            caller = await self.authorize(context)
            return await method(self, checked(request, context), context, caller)
        except errors.DomainError as error:
            await abort(context, error)
            raise  # abort raises; this line is never reached
        except grpc.aio.AbortError:
            raise  # the status is sent already (a bad message of a request stream)
        except Exception:
            log.exception("%s failed", method.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")
            raise

    return wrapper


def streaming(method: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    """Wraps a server-streaming servicer method: domain errors become their status."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[T]:
        try:
            caller = await self.authorize(context)
            async for response in method(self, checked(request, context), context, caller):
                yield response
        except errors.DomainError as error:
            await abort(context, error)
        except grpc.aio.AbortError:
            raise  # the status is sent already (a bad message of a request stream)
        except Exception:
            log.exception("%s failed", method.__qualname__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server log has the details")

    return wrapper
