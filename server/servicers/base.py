"""Who may call what: public services take user API keys, the agent service takes agent tokens."""

from __future__ import annotations

import grpc

from simplane.server import errors
from simplane.server.auth import AGENT_KEY, USER_KEY, Authenticator, Caller


class UserServicer:
    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def authorize(self, context: grpc.aio.ServicerContext) -> Caller:
        caller = await self._authenticator.caller(context)
        if caller.kind != USER_KEY:
            raise errors.PermissionDenied("agent tokens may only call the agent service")
        return caller


class AgentServicerBase:
    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def authorize(self, context: grpc.aio.ServicerContext) -> Caller:
        caller = await self._authenticator.caller(context)
        if caller.kind != AGENT_KEY:
            raise errors.PermissionDenied("the agent service needs an agent token (simplane admin agent-token)")
        return caller
