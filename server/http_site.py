"""The HTTP address of `simplane up`: for now a status page and /healthz; the web console will be served here."""

from __future__ import annotations

import asyncio
import html

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>simplane</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>simplane</h1><p>The server is up. gRPC: <code>{grpc}</code>.</p>
<p>The browser console is not part of this version yet; use <code>simplane tasks watch</code> meanwhile.</p>
</body></html>"""


class HttpSite:
    def __init__(self, grpc_address: str) -> None:
        self._page = PAGE.format(grpc=html.escape(grpc_address)).encode()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._answer, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path == b"/healthz":
                status, body, kind = b"200 OK", b"ok\n", b"text/plain"
            elif path in (b"/", b"/index.html"):
                status, body, kind = b"200 OK", self._page, b"text/html; charset=utf-8"
            else:
                status, body, kind = b"404 Not Found", b"not found\n", b"text/plain"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + kind
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
