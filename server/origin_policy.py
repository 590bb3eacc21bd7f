"""Which web pages may use the HTTP address (CORS), and which Host names it answers without auth."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from simplane.server.http_server import Request, Response

CORS_METHODS = "POST, GET"
CORS_REQUEST_HEADERS = "content-type, authorization, x-grpc-web, x-user-agent, grpc-timeout"
CORS_EXPOSED_HEADERS = "grpc-status, grpc-message"
CORS_MAX_AGE = "600"


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
