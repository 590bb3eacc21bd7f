"""The HTTP address of `simplane up`: which request gets what. gRPC paths go to the gRPC-web bridge (grpc_web.py),
as POSTs or over a WebSocket; /healthz says ok; any other GET is the web console (console_files.py).

Every request first passes the origin policy (origin_policy.py). A body is read only once the request is
admitted: a gRPC-web call's key is checked and its size bounded first (grpc_web.GrpcWebBridge.admit), and any
other request is answered without reading its body. The HTTP/1.1 itself is http_server.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable

from simplane.server import grpc_web, http_server, websocket
from simplane.server.console_files import BUNDLE, ConsoleBundle
from simplane.server.http_server import Request, Response, text_response
from simplane.server.origin_policy import OriginPolicy

# gRPC paths name a fully qualified service: /simplane.v1.TaskService/ListTasks.
API_PATH = re.compile(r"/[A-Za-z_]\w*(\.[A-Za-z_]\w*)+/")


class HttpSite:
    """Serves until stopped; `grpc_target` is where the gRPC server can be reached from this process."""

    def __init__(
        self, grpc_target: str, *, cors_origins: Iterable[str] = (), loopback_hosts_only: bool = False
    ) -> None:
        self._grpc_target = grpc_target
        self._origins = OriginPolicy(cors_origins, loopback_hosts_only)
        self._bundle = ConsoleBundle(BUNDLE)
        self._bridge: grpc_web.GrpcWebBridge | None = None
        self._server = http_server.HttpServer(self._answer)

    async def start(self, host: str, port: int) -> int:
        """Binds host:port (port 0 picks one) and returns the bound port."""
        self._bridge = grpc_web.GrpcWebBridge(self._grpc_target)
        return await self._server.start(host, port)

    async def stop(self) -> None:
        """Stops listening and closes every open connection; calls still open are cancelled as the client left."""
        await self._server.stop()
        if self._bridge is not None:
            await self._bridge.close()

    async def _answer(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """Answers one request; returns whether the connection stays open and the bytes read ahead."""
        refusal = self._origins.refusal(request)
        if refusal is not None:
            response = text_response(403, refusal)
        elif request.method == "OPTIONS":
            response = self._origins.preflight(request)
        elif API_PATH.match(request.path):
            text = grpc_web.is_text(request.headers.get("content-type", ""))
            if request.websocket_upgrade:
                return await self._websocket(request, reader, writer)
            if request.method != "POST":
                response = text_response(405, "gRPC-web calls are POSTs", [("Allow", "POST, OPTIONS")])
            elif text is None:
                response = text_response(415, "gRPC-web calls take content-type application/grpc-web or grpc-web-text")
            else:
                return await self._grpc_web(request, text, reader, writer)
        elif request.method not in ("GET", "HEAD"):
            response = text_response(
                405, f"{request.method} is not served here", [("Allow", "GET, HEAD, POST, OPTIONS")]
            )
        elif request.path == "/healthz":
            response = text_response(200, "ok", [("Cache-Control", "no-store")])
        else:
            response = self._bundle.response(request)
        await self._send(writer, request, response)
        return request.keep_alive, b""

    async def _grpc_web(
        self, request: Request, text: bool, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """A gRPC-web call, admitted before its body is read; a refusal is a trailer-only reply, then the end."""
        assert self._bridge is not None
        authorization = request.headers.get("authorization", "")
        try:
            await self._bridge.admit(request.path, text=text, authorization=authorization, length=request.length)
        except grpc_web.CallRefused as refused:
            refusal = Response(
                200,
                [("Content-Type", grpc_web.content_type(text)), ("Cache-Control", "no-store")],
                grpc_web.refusal_body(refused, text),
            )
            await self._send(writer, request, refusal)
            return request.keep_alive, b""
        body = await http_server.read_body(reader, writer, request)
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
            await self._send(writer, request, text_response(400, "only WebSocket version 13 is served"))
            return False, b""
        accept = websocket.accept_key(request.headers.get("sec-websocket-key", ""))
        if accept is None or request.length:
            await self._send(writer, request, text_response(400, "malformed WebSocket handshake"))
            return False, b""
        upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)]
        writer.write(http_server.head(101, upgrade))
        await writer.drain()
        assert self._bridge is not None
        with contextlib.suppress(websocket.Closed):
            await self._bridge.serve_websocket(request.path, websocket.WebSocket(reader, writer))
        return False, b""

    async def _relay(
        self, request: Request, reply: grpc_web.Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bool, bytes]:
        """Sends a gRPC-web reply; if the client goes away first, the call is cancelled.

        A streamed reply goes out frame by frame (http_server.send_stream); any other reply is gathered and sent
        with a Content-Length.
        """
        headers = [("Content-Type", reply.content_type), ("Cache-Control", "no-store")]
        async with contextlib.aclosing(reply.chunks) as chunks:
            if reply.streaming:
                origin_headers = self._origins.headers(request)
                return await http_server.send_stream(reader, writer, request, headers, chunks, origin_headers)
            body, ahead = await http_server.while_connected(reader, _gather(chunks))
        await self._send(writer, request, Response(200, headers, body))
        return request.keep_alive, ahead

    async def _send(self, writer: asyncio.StreamWriter, request: Request, response: Response) -> None:
        """Sends a response, with CORS headers for pages of allowed origins."""
        await http_server.send(writer, request, response, self._origins.headers(request))


async def _gather(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])
