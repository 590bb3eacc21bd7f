"""Who may call what: public services take user API keys, the agent service takes agent tokens."""

from __future__ import annotations

import grpc

from simplane.server import errors
from simplane.server.auth import AGENT_KEY, USER_KEY, Authenticator, Caller

_WRONG_KIND = {
    USER_KEY: "agent tokens may only call the agent service",
    AGENT_KEY: "the agent service needs an agent token (simplane admin agent-token)",
}


class AuthorizedServicer:
    """Names the caller of every RPC (see status.py) and refuses keys of the other kind."""

    key_kind = USER_KEY

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def authorize(self, context: grpc.aio.ServicerContext) -> Caller:
        caller = await self._authenticator.caller(context)
        if caller.kind != self.key_kind:
            raise errors.PermissionDenied(_WRONG_KIND[self.key_kind])
        return caller
