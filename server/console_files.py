"""The web console's files as the HTTP address serves them: cached in memory, gzipped, with ETags, and
`index.html` for the console's own routes."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from simplane.server.http_server import Request, Response, text_response

# Resolved: an editable install links each file of the package on its own, and a rebuilt bundle brings files
# with new hashed names that only the source folder has.
BUNDLE = Path(__file__).resolve().parent / "console_bundle"
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
MISSING_CONSOLE = b"""<!doctype html><html><head><meta charset="utf-8"><title>simplane</title></head>
<body><h1>simplane</h1><p>The server is up, but this copy of simplane was installed without the web console
(simplane/server/console_bundle/index.html is missing). The command line works: <code>simplane tasks watch</code>.</p>
</body></html>"""


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

    def response(self, request: Request) -> Response:
        """A file of the bundle; any other path outside assets/ is a client route, answered by index.html."""
        path = "/index.html" if request.path == "/" else request.path
        file = self._find(path)
        if file is not None:
            return file.response(request, IMMUTABLE if path.startswith("/assets/") else "no-cache")
        if path.startswith("/assets/"):
            return text_response(404, f"{path} not found")
        index = self._find("/index.html")
        if index is None:
            return Response(404, [("Content-Type", CONTENT_TYPES[".html"]), *HTML_HEADERS], MISSING_CONSOLE)
        return index.response(request, "no-cache")

    def _find(self, path: str) -> StaticFile | None:
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
