"""The HTTP address of `simplane up`: the web console's files, its gRPC-web API (see grpc_web.py) and /healthz.

A small HTTP/1.1 server on asyncio streams rather than a web framework, whose import alone would cost a
quarter of the second `simplane up` has to get ready in. It speaks what browsers need: keep-alive, bodies with
a Content-Length, chunked responses for streams, WebSockets for streaming calls, and bounds on header size, body
size and waiting. A body is read only once the request is admitted: a gRPC-web call's key is checked and its size
bounded first (grpc_web.GrpcWebBridge.admit), and any other request is answered without reading its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import ipaddress
import re
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from simplane.server import grpc_web, websocket

# Resolved: in a strict editable install this module is a link, and a rebuilt bundle's new asset names exist only
# in the source tree (docs/development.md).
BUNDLE = Path(__file__).resolve().parent / "console_bundle"
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
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HTML_HEADERS = [("Content-Security-Policy", CSP), ("Referrer-Policy", "no-referrer")]
# Files under assets/ carry a content hash in their name: a new build means new names.
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".wasm": "application/wasm",
}
COMPRESSIBLE = {".html", ".js", ".mjs", ".css", ".json", ".map", ".webmanifest", ".txt", ".svg", ".wasm"}
CORS_METHODS = "POST, GET"
CORS_REQUEST_HEADERS = "content-type, authorization, x-grpc-web, x-user-agent, grpc-timeout"
CORS_EXPOSED_HEADERS = "grpc-status, grpc-message"
CORS_MAX_AGE = "600"
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
# gRPC paths name a fully qualified service: /simplane.v1.TaskService/ListTasks.
API_PATH = re.compile(r"/[A-Za-z_]\w*(\.[A-Za-z_]\w*)+/")
MISSING_CONSOLE = b"""<!doctype html><html><head><meta charset="utf-8"><title>simplane</title></head>
<body><h1>simplane</h1><p>The server is up, but this copy of simplane was installed without the web console
(simplane/server/console_bundle/index.html is missing). The command line works: <code>simplane tasks watch</code>.</p>
</body></html>"""
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


def _text(status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers], message.encode() + b"\n")


class HttpSite:
    """Serves until stopped; `grpc_target` is where the gRPC server can be reached from this process."""

    def __init__(
        self, grpc_target: str, *, cors_origins: Iterable[str] = (), loopback_hosts_only: bool = False
    ) -> None:
        self._grpc_target = grpc_target
        self._origins = OriginPolicy(cors_origins, loopback_hosts_only)
        self._bundle = ConsoleBundle(BUNDLE)
        self._bridge: grpc_web.GrpcWebBridge | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> int:
        """Binds host:port (port 0 picks one) and returns the bound port."""
        self._bridge = grpc_web.GrpcWebBridge(self._grpc_target)
        self._server = await asyncio.start_server(self._serve_connection, host, port, limit=HEADER_LIMIT)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stops listening and closes every open connection; calls still open are cancelled as the client left."""
        if self._server is not None:
            self._server.close()
        for writer in self._connections.values():
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._bridge is not None:
            await self._bridge.close()

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
                    await self._send(writer, None, _text(error.status, error.message))
                    return
                if request is None:
                    return
                keep_alive, ahead = await self._answer(request, reader, writer)
                if request.length and not request.body_read:
                    await _linger(reader, writer)
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled; nobody is left to tell
        finally:
            del self._connections[connection]
            writer.close()

    async def _answer(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """Answers one request; returns whether the connection stays open and the bytes read ahead."""
        refusal = self._origins.refusal(request)
        if refusal is not None:
            response = _text(403, refusal)
        elif request.method == "OPTIONS":
            response = self._origins.preflight(request)
        elif API_PATH.match(request.path):
            text = grpc_web.is_text(request.headers.get("content-type", ""))
            if request.websocket_upgrade:
                return await self._websocket(request, reader, writer)
            if request.method != "POST":
                response = _text(405, "gRPC-web calls are POSTs", [("Allow", "POST, OPTIONS")])
            elif text is None:
                response = _text(415, "gRPC-web calls take content-type application/grpc-web or grpc-web-text")
            else:
                return await self._grpc_web(request, text, reader, writer)
        elif request.method not in ("GET", "HEAD"):
            response = _text(405, f"{request.method} is not served here", [("Allow", "GET, HEAD, POST, OPTIONS")])
        elif request.path == "/healthz":
            response = _text(200, "ok", [("Cache-Control", "no-store")])
        else:
            response = self._console(request)
        await self._send(writer, request, response)
        return request.keep_alive, b""

    def _console(self, request: Request) -> Response:
        """A file of the console bundle; any other path outside assets/ is a client route, answered by index.html."""
        path = "/index.html" if request.path == "/" else request.path
        file = self._bundle.find(path)
        if file is not None:
            return file.response(request, IMMUTABLE if path.startswith("/assets/") else "no-cache")
        if path.startswith("/assets/"):
            return _text(404, f"{path} not found")
        index = self._bundle.find("/index.html")
        if index is None:
            return Response(404, [("Content-Type", CONTENT_TYPES[".html"]), *HTML_HEADERS], MISSING_CONSOLE)
        return index.response(request, "no-cache")

    async def _grpc_web(
        self, request: Request, text: bool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """A gRPC-web call, admitted before its body is read; a refusal is a trailer-only reply, then the end."""
        assert self._bridge is not None
        authorization = request.headers.get("authorization", "")
        try:
            await self._bridge.admit(request.path, text=text, authorization=authorization, length=request.length)
        except grpc_web.CallRefused as refused:
            reply = Response(
                200,
                [("Content-Type", grpc_web.content_type(text)), ("Cache-Control", "no-store")],
                grpc_web.refusal_body(refused, text),
            )
            await self._send(writer, request, reply)
            return request.keep_alive, b""
        if request.length:
            if request.headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await asyncio.wait_for(reader.readexactly(request.length), BODY_TIMEOUT)
            request.body_read = True
        else:
            body = b""
        reply = self._bridge.call(
            request.path,
            text=text,
            body=body,
            authorization=authorization,
            timeout=request.headers.get("grpc-timeout", ""),
        )
        return await self._relay(request, reply, reader, writer)

    async def _websocket(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """A gRPC-web call over a WebSocket (grpc_web.GrpcWebBridge.serve_websocket); the connection ends with it."""
        if request.headers.get("sec-websocket-version") != "13":
            await self._send(writer, request, _text(400, "only WebSocket version 13 is served"))
            return False, b""
        accept = websocket.accept_key(request.headers.get("sec-websocket-key", ""))
        if accept is None or request.length:
            await self._send(writer, request, _text(400, "malformed WebSocket handshake"))
            return False, b""
        upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)]
        writer.write(_head(101, upgrade))
        await writer.drain()
        assert self._bridge is not None
        with contextlib.suppress(websocket.Closed):
            await self._bridge.serve_websocket(request.path, websocket.WebSocket(reader, writer))
        return False, b""

    async def _relay(
        self, request: Request, reply: grpc_web.Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """Sends a gRPC-web reply; if the client goes away first, the call is cancelled.

        A streamed reply goes out frame by frame as chunks of a chunked body (or until the connection closes, for
        HTTP/1.0); any other reply is gathered and sent with a Content-Length.
        """
        headers = [("Content-Type", reply.content_type), ("Cache-Control", "no-store")]
        chunked = request.version == "HTTP/1.1"
        async with contextlib.aclosing(reply.chunks) as chunks:
            if reply.streaming:
                keep_alive = chunked and request.keep_alive
                framing = [("Transfer-Encoding", "chunked")] if chunked else []
                framing += [] if keep_alive else [("Connection", "close")]
                writer.write(_head(200, [*headers, *self._common_headers(request), *framing]))
                _, ahead = await _while_connected(reader, _send_chunks(writer, chunks, chunked))
                return keep_alive, ahead
            body, ahead = await _while_connected(reader, _gather(chunks))
        await self._send(writer, request, Response(200, headers, body))
        return request.keep_alive, ahead

    async def _send(self, writer: asyncio.StreamWriter, request: Request | None, response: Response) -> None:
        headers = [*response.headers, *self._common_headers(request)]
        if response.status not in (204, 304):
            headers.append(("Content-Length", str(len(response.body))))
        if request is None or not request.keep_alive:
            headers.append(("Connection", "close"))
        writer.write(_head(response.status, headers))
        if request is None or request.method != "HEAD":
            writer.write(response.body)
        await writer.drain()

    def _common_headers(self, request: Request | None) -> list[tuple[str, str]]:
        """Headers of every response: no content sniffing, and CORS for pages of allowed origins."""
        origin_headers = self._origins.headers(request) if request is not None else []
        return [("X-Content-Type-Options", "nosniff"), *origin_headers]


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
        head = ahead + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise HttpError(431, f"the request head is over {HEADER_LIMIT} bytes") from None
    lines = head[:-4].decode("latin-1").split("\r\n")
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


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send_chunks(writer: asyncio.StreamWriter, chunks: AsyncIterator[bytes], chunked: bool) -> None:
    """Writes each chunk as soon as it comes: a status change should reach the browser without delay."""
    async for chunk in chunks:
        writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _gather(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def _while_connected(reader: asyncio.StreamReader, work: Awaitable[T]) -> tuple[T, bytes]:
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


class OriginPolicy:
    """Which web pages may use this server: its own, and those of the origins listed with --cors-origin.

    With auth disabled, requests must also name a loopback host: a page on any site could otherwise point its
    own domain at 127.0.0.1 (DNS rebinding) and call the API as a same-origin page.
    """

    def __init__(self, allowed: Iterable[str], loopback_hosts_only: bool) -> None:
        self._allowed = frozenset(allowed)
        self._loopback_hosts_only = loopback_hosts_only

    def refusal(self, request: Request) -> str | None:
        """Why the request is refused, or None."""
        host = request.headers.get("host", "")
        if self._loopback_hosts_only and not _is_loopback_host(host):
            return f"host {host!r} is not a loopback address, and this server runs without auth"
        origin = request.headers.get("origin")
        if origin is None or origin in self._allowed or _same_origin(origin, host):
            return None
        return f"pages of {origin} may not call this server; `simplane up --cors-origin {origin}` would allow it"

    def headers(self, request: Request) -> list[tuple[str, str]]:
        """The CORS headers of a response to an allowed request from another origin."""
        origin = request.headers.get("origin")
        if origin is None or origin not in self._allowed:
            return [("Vary", "Origin")] if self._allowed else []
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS),
            ("Vary", "Origin"),
        ]

    def preflight(self, request: Request) -> Response:
        """The answer to OPTIONS, which browsers send before a call from another origin (it passed `refusal`).

        Access-Control-Allow-Origin comes with `headers`, as on every response to an allowed origin.
        """
        if "origin" not in request.headers:
            return Response(204, [("Allow", "GET, HEAD, POST, OPTIONS")])
        return Response(
            204,
            [
                ("Access-Control-Allow-Methods", CORS_METHODS),
                ("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS),
                ("Access-Control-Max-Age", CORS_MAX_AGE),
            ],
        )


def _host_name(host: str) -> str:
    """The name of a Host header, without its port or IPv6 brackets."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def _is_loopback_host(host: str) -> bool:
    name = _host_name(host).lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _same_origin(origin: str, host: str) -> bool:
    """Whether a page of `origin` asks its own server: the Host it reached is the one in its origin.

    https counts too: behind a TLS proxy the page's origin is https, the Host the same.
    """
    return bool(host) and origin.lower() in (f"http://{host.lower()}", f"https://{host.lower()}")


@dataclass(frozen=True)
class StaticFile:
    content_type: str
    body: bytes
    etag: str
    # The gzip form, when it is smaller (from a .gz sibling in the bundle, or compressed on first use).
    gzipped: bytes | None
    # The file's (mtime, size) when read: a rebuilt bundle is picked up without a restart.
    stamp: tuple[int, int]

    def response(self, request: Request, cache_control: str) -> Response:
        """200 with the file (gzipped if the client takes it), or 304 if the client has this version."""
        gzipped = self.gzipped is not None and _accepts_gzip(request.headers.get("accept-encoding", ""))
        etag = f'{self.etag[:-1]}-gz"' if gzipped else self.etag
        headers = [("Content-Type", self.content_type), ("Cache-Control", cache_control), ("ETag", etag)]
        if self.gzipped is not None:
            headers.append(("Vary", "Accept-Encoding"))
        if self.content_type.startswith("text/html"):
            headers += HTML_HEADERS
        if _etag_matches(request.headers.get("if-none-match", ""), etag):
            return Response(304, headers)
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
            return Response(200, headers, self.gzipped or b"")
        return Response(200, headers, self.body)


class ConsoleBundle:
    """The built console: files read on first request and kept in memory, for a fast first load."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._files: dict[str, StaticFile] = {}

    def find(self, path: str) -> StaticFile | None:
        """The file at a URL path, or None if there is no such regular file inside the bundle."""
        parts = path.lstrip("/").split("/")
        if any(not part or part.startswith(".") or "\\" in part or "\0" in part for part in parts):
            return None
        file = self._root.joinpath(*parts)
        try:
            status = file.stat()
        except OSError:
            return None
        if not file.is_file():
            return None
        stamp = (status.st_mtime_ns, status.st_size)
        cached = self._files.get(path)
        if cached is None or cached.stamp != stamp:
            cached = self._files[path] = _load(file, stamp)
        return cached


def _load(file: Path, stamp: tuple[int, int]) -> StaticFile:
    body = file.read_bytes()
    gzipped = None
    sibling = file.with_name(file.name + ".gz")
    if sibling.is_file() and sibling.stat().st_mtime_ns >= stamp[0]:
        gzipped = sibling.read_bytes()
    elif file.suffix in COMPRESSIBLE:
        gzipped = gzip.compress(body, compresslevel=6, mtime=0)
    if gzipped is not None and len(gzipped) >= len(body):
        gzipped = None
    content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream")
    etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
    return StaticFile(content_type, body, etag, gzipped, stamp)


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        name, _, parameters = item.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            quality = parameters.strip().removeprefix("q=").strip()
            return quality == "" or quality.strip("0.") != ""
    return False


def _etag_matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags
