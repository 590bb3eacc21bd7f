"""gRPC-web for the browser console: each call is replayed as a native gRPC call on a loopback channel.

The bridge never decodes a message. Requests and responses stay bytes (generic methods, no serializers), so
authentication, status codes, deadlines and cancellation are exactly those of the gRPC server: the call the
bridge makes is an ordinary gRPC call. What it adds is the gRPC-web framing: message frames (flag 0, length,
bytes) and a closing trailer frame (flag 0x80) that carries grpc-status, grpc-message and, when the server sent
them, the status details (grpc-status-details-bin: a google.rpc.Status, e.g. the field of an INVALID_ARGUMENT),
optionally base64 encoded for the -text content types.

A request is admitted before its body is read (`admit`): the method must be served, the key accepted by the
server (asked with WhoAmI, accepted keys remembered briefly), and the body within the method's limit. So a
caller without a valid key costs the server a header's worth of memory, whatever body it announces.
"""

from __future__ import annotations

import base64
import contextlib
import re
import struct
import time
import urllib.parse
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2

from simplane._api.v1 import account_pb2, machine_group_pb2, storage_pb2, task_pb2
from simplane._protocol.channel import message_size_options
from simplane.server import websocket
from simplane.server.request_limits import MAX_SINGLE_UPLOAD

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
# Request bodies: an upload holds one whole file (UploadFile takes at most MAX_SINGLE_UPLOAD bytes of data) and
# its path, hash and framing; any other request is small. Linux caps a command line and its environment together
# at 2 MiB (ARG_MAX), so no SubmitTask a program could run comes near the limit. Base64 (-text) is a third longer.
UPLOAD_METHODS = ("/simplane.v1.StorageService/UploadFile", "/simplane.v1.StorageService/UploadFiles")
MAX_UPLOAD_REQUEST_BYTES = MAX_SINGLE_UPLOAD + 64 * 1024
MAX_REQUEST_BYTES = 4 * 1024 * 1024
# The first WebSocket message: the call's headers (authorization, grpc-timeout) as "name: value" lines. Browsers
# send it as the socket opens, and the request body right after it.
MAX_WEBSOCKET_HEAD_BYTES = 8 * 1024
WEBSOCKET_HEAD_TIMEOUT = 10.0
WEBSOCKET_BODY_TIMEOUT = 120.0
# Keys the server accepted are not asked again for a while; the call itself is still checked by the server, so a
# key revoked meanwhile only gets its body read, never served.
KEY_TTL = 30.0
MAX_KEYS = 1024
KEY_CHECK_TIMEOUT = 10.0
WHO_AM_I = "/simplane.v1.AccountService/WhoAmI"
MESSAGE_FLAG = 0x00
TRAILER_FLAG = 0x80
# The trailer holding a serialized google.rpc.Status; like every -bin header it travels base64-encoded.
STATUS_DETAILS = "grpc-status-details-bin"
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
    # The most bytes a binary request body may hold.
    max_request_bytes: int

    def limit(self, text: bool) -> int:
        """The most bytes a request body may hold, in the binary or the base64 (-text) form."""
        return self.max_request_bytes * 4 // 3 + 4 if text else self.max_request_bytes


def public_methods() -> dict[str, Method]:
    """Every method of the public services, by its HTTP path `/package.Service/Method`."""
    methods = {}
    for service in PUBLIC_SERVICES:
        for method in service.methods:
            if method.client_streaming and method.server_streaming:
                continue  # gRPC-web has no bidirectional calls: the request body ends before the response starts
            path = f"/{service.full_name}/{method.name}"
            limit = MAX_UPLOAD_REQUEST_BYTES if path in UPLOAD_METHODS else MAX_REQUEST_BYTES
            methods[path] = Method(path, method.client_streaming, method.server_streaming, limit)
    return methods


@dataclass(frozen=True)
class Reply:
    """An answer to one gRPC-web request: the HTTP body comes as chunks, each one frame, ready to send."""

    content_type: str
    # Streamed replies should reach the client frame by frame; the others may be sent in one piece.
    streaming: bool
    chunks: AsyncGenerator[bytes, None]


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
        self._channel = grpc.aio.insecure_channel(target, options=message_size_options())
        self._keys = KeyCheck(self._channel)

    async def admit(self, path: str, *, text: bool, authorization: str, length: int) -> None:
        """Raises CallRefused unless a request to `path` with this key and body length may be read and called."""
        method = self._method(path)
        await self._keys.check(authorization)
        if length > method.limit(text):
            raise CallRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the request body is {length} bytes; {path.lstrip('/')} takes at most {method.limit(text)}",
            )

    def call(self, path: str, *, text: bool, body: bytes, authorization: str, timeout: str) -> Reply:
        """The reply to a POST of `body` to `path`, which `admit` let in; nothing runs until its chunks are read.

        `authorization` and `timeout` are the request's authorization and grpc-timeout headers ("" if absent).
        """
        method = self._method(path)
        frames = self._forward(method, text, body, authorization, timeout)
        chunks = _base64_each(frames) if text else frames
        return Reply(content_type(text), method.server_streaming, chunks)

    async def serve_websocket(self, path: str, socket: websocket.WebSocket) -> None:
        """One call over a WebSocket, for browsers that would run out of HTTP/1.1 connections (docs/grpc-web.md).

        The first client message holds the call's headers as `name: value` lines, the second its gRPC-web request
        body; both are bounded, and the key is checked between them. Each frame of the reply goes back as one
        binary message, the trailer last; the call is cancelled if the client closes first.
        """
        try:
            head = await socket.receive(MAX_WEBSOCKET_HEAD_BYTES, WEBSOCKET_HEAD_TIMEOUT)
            headers = _header_lines(head)
            method = self._method(path)
            await self._keys.check(headers.get("authorization", ""))
            body = await socket.receive(method.limit(False), WEBSOCKET_BODY_TIMEOUT)
        except CallRefused as refused:
            await socket.send(trailer(refused.code, refused.message))
            await socket.close(websocket.NORMAL_CLOSURE)
            return
        except websocket.MessageTooBig as too_big:
            await socket.send(trailer(grpc.StatusCode.RESOURCE_EXHAUSTED, str(too_big)))
            await socket.close(websocket.MESSAGE_TOO_BIG)
            return
        reply = self.call(
            path,
            text=False,
            body=body,
            authorization=headers.get("authorization", ""),
            timeout=headers.get("grpc-timeout", ""),
        )
        async with contextlib.aclosing(reply.chunks) as chunks:
            if await socket.send_all(chunks):
                await socket.close(websocket.NORMAL_CLOSURE)

    def _method(self, path: str) -> Method:
        method = self._methods.get(path)
        if method is None:
            raise CallRefused(grpc.StatusCode.UNIMPLEMENTED, f"{path.lstrip('/')} is not served over gRPC-web")
        return method

    async def _forward(
        self, method: Method, text: bool, body: bytes, authorization: str, timeout: str
    ) -> AsyncGenerator[bytes, None]:
        status_details = b""
        try:
            messages = decode_messages(body, text)
            if not method.client_streaming and len(messages) != 1:
                raise CallRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, f"{method.path} takes one request message, got {len(messages)}"
                )
            seconds = parse_timeout(timeout) if timeout else None
            metadata = (("authorization", authorization),) if authorization else None
            if method.server_streaming:
                stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = self._channel.unary_stream(method.path)
                responses = stream(messages[0], timeout=seconds, metadata=metadata)
                try:
                    async for message in responses:
                        yield frame(MESSAGE_FLAG, message)
                finally:
                    responses.cancel()  # a no-op once the call ended; otherwise the client went away
            else:
                response: grpc.aio.StreamUnaryCall[bytes, bytes] | grpc.aio.UnaryUnaryCall[bytes, bytes]
                if method.client_streaming:
                    upload: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = self._channel.stream_unary(method.path)
                    response = upload(iter(messages), timeout=seconds, metadata=metadata)
                else:
                    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(method.path)
                    response = unary(messages[0], timeout=seconds, metadata=metadata)
                try:
                    yield frame(MESSAGE_FLAG, await response)
                finally:
                    response.cancel()
            code, details = grpc.StatusCode.OK, ""
        except CallRefused as refused:
            code, details = refused.code, refused.message
        except grpc.aio.AioRpcError as error:
            code, details = error.code(), error.details() or ""
            status_details = _status_details(error.trailing_metadata())
        yield trailer(code, details, status_details)

    async def close(self) -> None:
        await self._channel.close()


class KeyCheck:
    """Whether the server accepts an authorization header (or its absence), asked with WhoAmI before a body is read.

    Accepted headers are remembered for KEY_TTL seconds, at most MAX_KEYS of them (the oldest go first); refusals
    are not remembered, so a key that starts to work is let in at once.
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._who_am_i: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(WHO_AM_I)
        self._accepted: dict[str, float] = {}

    async def check(self, authorization: str) -> None:
        """Returns if the server accepts `authorization`; raises CallRefused with the server's answer otherwise."""
        now = time.monotonic()
        if self._accepted.get(authorization, 0.0) > now:
            return
        metadata = (("authorization", authorization),) if authorization else None
        try:
            await self._who_am_i(b"", metadata=metadata, timeout=KEY_CHECK_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            raise CallRefused(error.code(), error.details() or "") from None
        self._accepted.pop(authorization, None)
        if len(self._accepted) >= MAX_KEYS:
            self._accepted = {key: until for key, until in self._accepted.items() if until > now}
        while len(self._accepted) >= MAX_KEYS:
            del self._accepted[next(iter(self._accepted))]
        self._accepted[authorization] = now + KEY_TTL


def content_type(text: bool) -> str:
    """The content type of a reply: the form the request came in, with +proto."""
    return TEXT_TYPES[1] if text else BINARY_TYPES[1]


def refusal_body(refused: CallRefused, text: bool) -> bytes:
    """The body of a reply that is only a trailer, for a request refused before its body was read."""
    body = trailer(refused.code, refused.message)
    return base64.b64encode(body) if text else body


def frame(flag: int, payload: bytes) -> bytes:
    return _HEADER.pack(flag, len(payload)) + payload


def trailer(code: grpc.StatusCode, message: str, status_details: bytes = b"") -> bytes:
    """The closing frame; `status_details` is the serialized google.rpc.Status the server sent, if any."""
    encoded = urllib.parse.quote(message, safe=_MESSAGE_SAFE)
    fields = f"grpc-status:{code.value[0]}\r\ngrpc-message:{encoded}\r\n"
    if status_details:
        fields += f"{STATUS_DETAILS}:{base64.b64encode(status_details).decode()}\r\n"
    return frame(TRAILER_FLAG, fields.encode())


def _status_details(trailing: grpc.aio.Metadata | None) -> bytes:
    """The serialized google.rpc.Status among a call's trailing metadata, or b"" if it has none."""
    for key, value in trailing or ():
        if key == STATUS_DETAILS and isinstance(value, bytes):
            return value
    return b""


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


def _header_lines(head: bytes) -> dict[str, str]:
    """The headers of a call sent over a WebSocket: `name: value` lines, names in any case."""
    headers = {}
    for line in head.decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise CallRefused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed header line {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


async def _base64_each(frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """The -text form: each frame in base64 on its own, so each can be sent as it comes."""
    async with contextlib.aclosing(frames):
        async for chunk in frames:
            yield base64.b64encode(chunk)
