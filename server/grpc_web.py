"""gRPC-web for the browser console: each call is replayed as a native gRPC call on a loopback channel.

The bridge never decodes a message. Requests and responses stay bytes (generic methods, no serializers), so
authentication, status codes, deadlines and cancellation are exactly those of the gRPC server: the call the
bridge makes is an ordinary gRPC call. What it adds is the gRPC-web framing: message frames (flag 0, length,
bytes) and a closing trailer frame (flag 0x80) that carries grpc-status and grpc-message, optionally base64
encoded for the -text content types.
"""

from __future__ import annotations

import base64
import contextlib
import re
import struct
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2

from simplane._api.v1 import account_pb2, machine_group_pb2, storage_pb2, task_pb2
from simplane.server.app import MAX_MESSAGE

# The services a browser may call; AgentService is for agents only and stays off the bridge.
PUBLIC_SERVICES = (
    task_pb2.DESCRIPTOR.services_by_name["TaskService"],
    storage_pb2.DESCRIPTOR.services_by_name["StorageService"],
    account_pb2.DESCRIPTOR.services_by_name["AccountService"],
    machine_group_pb2.DESCRIPTOR.services_by_name["MachineGroupService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
)
BINARY_TYPES = ("application/grpc-web", "application/grpc-web+proto")
TEXT_TYPES = ("application/grpc-web-text", "application/grpc-web-text+proto")
# A request holds at most one maximal message plus framing; base64 makes the text form a third longer.
MAX_REQUEST_BYTES = MAX_MESSAGE + 64 * 1024
MAX_TEXT_REQUEST_BYTES = MAX_REQUEST_BYTES * 4 // 3 + 4
MESSAGE_FLAG = 0x00
TRAILER_FLAG = 0x80
_HEADER = struct.Struct(">BI")
_TIMEOUT = re.compile(r"(\d{1,8})([HMSmun])")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# grpc-message is percent-encoded: everything but printable ASCII, and "%" itself.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def is_text(content_type: str) -> bool | None:
    """Whether a request's content type is the base64 (-text) form, the binary one, or None: not gRPC-web."""
    kind = content_type.partition(";")[0].strip().lower()
    if kind in TEXT_TYPES:
        return True
    if kind in BINARY_TYPES:
        return False
    return None


@dataclass(frozen=True)
class Method:
    path: str
    client_streaming: bool
    server_streaming: bool


def public_methods() -> dict[str, Method]:
    """Every method of the public services, by its HTTP path `/package.Service/Method`."""
    methods = {}
    for service in PUBLIC_SERVICES:
        for method in service.methods:
            if method.client_streaming and method.server_streaming:
                continue  # gRPC-web has no bidirectional calls: the request body ends before the response starts
            path = f"/{service.full_name}/{method.name}"
            methods[path] = Method(path, method.client_streaming, method.server_streaming)
    return methods


@dataclass(frozen=True)
class Reply:
    """An answer to one gRPC-web request: the HTTP body comes as chunks, each one frame, ready to send."""

    content_type: str
    # Streamed replies should reach the client frame by frame; the others may be sent in one piece.
    streaming: bool
    chunks: AsyncIterator[bytes]


class CallRefused(Exception):
    """A request the bridge cannot turn into a call; it ends in a trailer with this status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GrpcWebBridge:
    """Forwards gRPC-web requests to the gRPC server at `target`, on one loopback channel shared by all calls."""

    def __init__(self, target: str) -> None:
        self._methods = public_methods()
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )

    def call(self, path: str, *, text: bool, body: bytes, authorization: str, timeout: str) -> Reply:
        """The reply to a POST of `body` to `path`; nothing runs until its chunks are read.

        `authorization` and `timeout` are the request's authorization and grpc-timeout headers ("" if absent).
        """
        method = self._methods.get(path)
        frames = self._forward(path, method, text, body, authorization, timeout)
        content_type = TEXT_TYPES[1] if text else BINARY_TYPES[1]
        chunks = _base64_each(frames) if text else frames
        return Reply(content_type, method is not None and method.server_streaming, chunks)

    async def _forward(
        self, path: str, method: Method | None, text: bool, body: bytes, authorization: str, timeout: str
    ) -> AsyncIterator[bytes]:
        try:
            if method is None:
                raise CallRefused(grpc.StatusCode.UNIMPLEMENTED, f"{path.lstrip('/')} is not served over gRPC-web")
            messages = decode_messages(body, text)
            if not method.client_streaming and len(messages) != 1:
                raise CallRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{method.path} takes one request message, got {len(messages)}"
                )
            options = {
                "timeout": parse_timeout(timeout) if timeout else None,
                "metadata": (("authorization", authorization),) if authorization else None,
            }
            if method.client_streaming:
                call = self._channel.stream_unary(path)(iter(messages), **options)
            elif method.server_streaming:
                call = self._channel.unary_stream(path)(messages[0], **options)
            else:
                call = self._channel.unary_unary(path)(messages[0], **options)
            try:
                if method.server_streaming:
                    async for message in call:
                        yield frame(MESSAGE_FLAG, message)
                else:
                    yield frame(MESSAGE_FLAG, await call)
            finally:
                call.cancel()  # a no-op once the call ended; otherwise the client went away
            code, details = grpc.StatusCode.OK, ""
        except CallRefused as refused:
            code, details = refused.code, refused.message
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details() or ""
        yield trailer(code, details)

    async def close(self) -> None:
        await self._channel.close()


def frame(flag: int, payload: bytes) -> bytes:
    return _HEADER.pack(flag, len(payload)) + payload


def trailer(code: grpc.StatusCode, message: str) -> bytes:
    encoded = urllib.parse.quote(message, safe=_MESSAGE_SAFE)
    return frame(TRAILER_FLAG, f"grpc-status:{code.value[0]}\r\ngrpc-message:{encoded}\r\n".encode())


def decode_messages(body: bytes, text: bool) -> list[bytes]:
    """The messages of a request body: uncompressed message frames, end to end."""
    if text:
        try:
            body = base64.b64decode(body, validate=True)
        except ValueError:
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the request body is not valid base64") from None
    messages, position = [], 0
    while position < len(body):
        if len(body) - position < _HEADER.size:
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the request body ends inside a frame header")
        flag, length = _HEADER.unpack_from(body, position)
        position += _HEADER.size
        if flag != MESSAGE_FLAG:
            raise CallRefused(
                grpc.StatusCode.INVALID_ARGUMENT, f"request frame flag {flag:#04x}: only uncompressed messages (0x00)"
            )
        if len(body) - position < length:
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, "the request body ends inside a message")
        messages.append(body[position : position + length])
        position += length
    return messages


def parse_timeout(value: str) -> float:
    """Seconds from a grpc-timeout header: up to 8 digits and a unit, e.g. "1S" or "250m"."""
    match = _TIMEOUT.fullmatch(value.strip())
    if match is None:
        raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"grpc-timeout: {value!r} is not digits and a unit")
    return int(match[1]) * _TIMEOUT_UNITS[match[2]]


async def _base64_each(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The -text form: each frame in base64 on its own, so each can be sent as it comes."""
    async with contextlib.aclosing(frames):
        async for chunk in frames:
            yield base64.b64encode(chunk)
