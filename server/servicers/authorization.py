"""Who may call what: public services take user API keys; the agent service takes a join token for Join and a
machine credential for everything else. The key travels in the call's metadata, read here, at the edge."""

from __future__ import annotations

from typing import Any

import grpc

from simplane.server import errors
from simplane.server.auth import Authenticator
from simplane.server.caller import AGENT_KEY, MACHINE_KEY, USER_KEY, Caller

# What every servicer method gets besides its request (and uses only through status.py's decorators).
ServicerContext = grpc.aio.ServicerContext[Any, Any]

_WRONG_KIND = {
    USER_KEY: "agent tokens and machine credentials may only call the agent service",
    AGENT_KEY: "the agent service needs an agent token (simplane admin agent-token)",
    MACHINE_KEY: "this call needs the machine credential that Join returns; an agent token can only join",
}


class AuthorizedServicer:
    """Names the caller of every RPC (see status.py) and refuses keys of the kinds the service does not take."""

    key_kinds = frozenset({USER_KEY})

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def authorize(self, context: ServicerContext) -> Caller:
        caller = await self._authenticator.caller(_bearer(context))
        if caller.kind not in self.key_kinds:
            raise errors.PermissionDenied(_WRONG_KIND[USER_KEY if USER_KEY in self.key_kinds else AGENT_KEY])
        return caller


def require_kind(caller: Caller, kind: str) -> None:
    """For services that take several kinds of key: this call takes only `kind`."""
    if caller.kind != kind:
        raise errors.PermissionDenied(_WRONG_KIND[kind])


def _bearer(context: ServicerContext) -> str | None:
    """The key of the call's `authorization: Bearer <key>` header; None when there is no such header."""
    for name, value in context.invocation_metadata() or ():
        if name == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise errors.Unauthenticated("authorization header must read 'Bearer <key>'")
            return token.strip()
    return None
