"""A small HTTP/1.1 server on asyncio streams: it reads requests, keeps connections alive and sends responses;
what each request gets is up to its handler (http_site.py).

Not a web framework, whose import alone would cost a quarter of the second `simplane up` has to get ready in. It
speaks what browsers need: keep-alive, bodies with a Content-Length, chunked responses for streams, and bounds on
header size, body size and waiting. A handler reads a request's body only if it takes the request (`read_body`);
a body left unread ends the connection with a lingering close.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

HEADER_LIMIT = 32 * 1024
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 120.0
# How long a kept-alive connection may wait for its next request.
IDLE_TIMEOUT = 60.0
# After answering a request whose body it will not read, the server stops sending and discards what the client
# still sends for a while (a "lingering close"): closing at once would reset the connection, and a client still
# sending could lose the answer. Bounded in time and bytes; nothing of it is kept.
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 16 * 1024 * 1024
# Sent with every response: browsers take the Content-Type as given.
NOSNIFF = ("X-Content-Type-Options", "nosniff")
REASONS = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}
T = TypeVar("T")


class HttpError(Exception):
    """A request that is answered with an error status, after which the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(ConnectionError):
    """The client closed its connection while its request was being answered."""


@dataclass
class Request:
    method: str
    path: str
    version: str
    # Lower-case names; repeated headers joined with ", ".
    headers: dict[str, str]
    # The body's length (Content-Length), and whether it was read: a connection with a body left unread closes.
    length: int = 0
    body_read: bool = False

    @property
    def keep_alive(self) -> bool:
        if self.length and not self.body_read:
            return False
        tokens = self._connection_tokens()
        return "keep-alive" in tokens if self.version == "HTTP/1.0" else "close" not in tokens

    @property
    def websocket_upgrade(self) -> bool:
        return (
            self.method == "GET"
            and "upgrade" in self._connection_tokens()
            and self.headers.get("upgrade", "").lower() == "websocket"
        )

    def _connection_tokens(self) -> set[str]:
        return {token.strip().lower() for token in self.headers.get("connection", "").split(",")}


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def text_response(status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers], message.encode() + b"\n")


Handler = Callable[[Request, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[tuple[bool, bytes]]]
"""Answers one request; returns whether the connection stays open and the bytes of the next request read ahead."""


class HttpServer:
    """Serves connections until stopped, passing each request to `handler`."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> int:
        """Binds host:port (port 0 picks one) and returns the bound port."""
        self._server = await asyncio.start_server(self._serve_connection, host, port, limit=HEADER_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stops listening and closes every open connection; calls still open are cancelled as the client left."""
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = asyncio.current_task()
        assert connection is not None
        self._connections[connection] = writer
        ahead = b""  # bytes of the next request that arrived while the last one was being answered
        try:
            while True:
                try:
                    request = await _read_request(reader, ahead)
                except HttpError as error:
                    await send(writer, None, text_response(error.status, error.message))
                    return
                if request is None:
                    return
                keep_alive, ahead = await self._handler(request, reader, writer)
                if request.length and not request.body_read:
                    await _linger(reader, writer)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled; nobody is left to tell
        finally:
            del self._connections[connection]
            writer.close()


async def read_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request) -> bytes:
    """The body of a request its handler takes; an `Expect: 100-continue` is answered only now."""
    if not request.length:
        return b""
    if request.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await asyncio.wait_for(reader.readexactly(request.length), BODY_TIMEOUT)
    request.body_read = True
    return body


async def send(
    writer: asyncio.StreamWriter,
    request: Request | None,
    response: Response,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> None:
    """Sends a response with a Content-Length; `request` is None for a request that could not be read."""
    headers = [*response.headers, NOSNIFF, *extra_headers]
    if response.status not in (204, 304):
        headers.append(("Content-Length", str(len(response.body))))
    if request is None or not request.keep_alive:
        headers.append(("Connection", "close"))
    writer.write(head(response.status, headers))
    if request is None or request.method != "HEAD":
        writer.write(response.body)
    await writer.drain()


async def send_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: Request,
    headers: Iterable[tuple[str, str]],
    chunks: AsyncIterator[bytes],
    extra_headers: Iterable[tuple[str, str]] = (),
) -> tuple[bool, bytes]:
    """Sends a 200 whose body goes out as `chunks` come, as chunks of a chunked body (or until the connection
    closes, for HTTP/1.0); stops with ClientGone if the client goes away first. Returns what a Handler returns."""
    chunked = request.version == "HTTP/1.1"
    keep_alive = chunked and request.keep_alive
    framing = [("Transfer-Encoding", "chunked")] if chunked else []
    framing += [] if keep_alive else [("Connection", "close")]
    writer.write(head(200, [*headers, NOSNIFF, *extra_headers, *framing]))
    _, ahead = await while_connected(reader, _send_chunks(writer, chunks, chunked))
    return keep_alive, ahead


def head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    """The status line and headers of a response."""
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def while_connected(reader: asyncio.StreamReader, work: Awaitable[T]) -> tuple[T, bytes]:
    """Runs `work` while watching the connection, and cancels it if the client closes the connection first.

    HTTP/1.1 clients send nothing more until the response ended, so a read that returns means the end of the
    connection, unless it returns the start of a pipelined request: then the work goes on, unwatched, and those
    bytes are returned with its result.
    """
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait((working, watching), return_when=asyncio.FIRST_COMPLETED)
        ahead = b""
        if watching.done():
            ahead = b"" if watching.exception() is not None else watching.result()
            if not ahead:
                raise ClientGone
        return await working, ahead
    finally:
        for task in (working, watching):
            task.cancel()
        await asyncio.gather(working, watching, return_exceptions=True)


async def _read_request(reader: asyncio.StreamReader, ahead: bytes) -> Request | None:
    """The head of the next request on the connection (its body is left to read), or None once the client closed
    it or stayed idle too long."""
    if not ahead:
        try:
            ahead = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT)
        except TimeoutError:
            return None
        if not ahead:
            return None
    try:
        request_head = ahead + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"the request head is over {HEADER_LIMIT} bytes") from None
    lines = request_head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[1].startswith("/"):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "only HTTP/1.1 and HTTP/1.0 are served")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"malformed header line {line[:40]!r}")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    request = Request(method, urllib.parse.unquote(target.partition("?")[0]), version, headers)
    if "transfer-encoding" in headers:
        raise HttpError(411, "send the request body with a Content-Length")
    length = headers.get("content-length", "0")
    if not length.isdigit() or len(length) > 18:
        raise HttpError(400, f"bad Content-Length {length[:40]!r}")
    request.length = int(length)
    return request


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Ends the sending side and discards what the client still sends, for LINGER_TIMEOUT or LINGER_BYTES at most."""
    if writer.can_write_eof():
        writer.write_eof()
    discarded = 0
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(LINGER_TIMEOUT):
            while discarded < LINGER_BYTES and (data := await reader.read(64 * 1024)):
                discarded += len(data)


async def _send_chunks(writer: asyncio.StreamWriter, chunks: AsyncIterator[bytes], chunked: bool) -> None:
    """Writes each chunk as soon as it comes: a status change should reach the browser without delay."""
    async for chunk in chunks:
        writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
