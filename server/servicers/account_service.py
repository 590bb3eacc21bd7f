"""AccountService: decode, call the accounts core, encode."""

from __future__ import annotations

from simplane._api.v1 import account_pb2, account_pb2_grpc
from simplane.server.accounts import Accounts
from simplane.server.auth import Authenticator
from simplane.server.caller import Caller
from simplane.server.servicers.authorization import AuthorizedServicer, ServicerContext
from simplane.server.status import unary
from simplane.server.tasks import TaskRegistry


class AccountService(AuthorizedServicer, account_pb2_grpc.AccountServiceServicer):
    def __init__(self, authenticator: Authenticator, accounts: Accounts, tasks: TaskRegistry) -> None:
        super().__init__(authenticator)
        self._accounts = accounts
        self._tasks = tasks

    @unary
    async def WhoAmI(
        self, request: account_pb2.WhoAmIRequest, context: ServicerContext, caller: Caller
    ) -> account_pb2.WhoAmIResponse:
        return await self._accounts.whoami(caller)

    @unary
    async def CreateApiKey(
        self, request: account_pb2.CreateApiKeyRequest, context: ServicerContext, caller: Caller
    ) -> account_pb2.CreateApiKeyResponse:
        return await self._accounts.create_key(caller, request.description)

    @unary
    async def ListApiKeys(
        self, request: account_pb2.ListApiKeysRequest, context: ServicerContext, caller: Caller
    ) -> account_pb2.ListApiKeysResponse:
        return account_pb2.ListApiKeysResponse(api_keys=await self._accounts.list_keys(caller))

    @unary
    async def RevokeApiKey(
        self, request: account_pb2.RevokeApiKeyRequest, context: ServicerContext, caller: Caller
    ) -> account_pb2.RevokeApiKeyResponse:
        return account_pb2.RevokeApiKeyResponse(api_key=await self._accounts.revoke_key(caller, request.id))

    @unary
    async def GetQuotas(
        self, request: account_pb2.GetQuotasRequest, context: ServicerContext, caller: Caller
    ) -> account_pb2.GetQuotasResponse:
        active = self._tasks.active_count(caller.user)
        return account_pb2.GetQuotasResponse(quotas=await self._accounts.quotas(caller, active))

    @unary
    async def GetUsage(
        self, request: account_pb2.GetUsageRequest, context: ServicerContext, caller: Caller
    ) -> account_pb2.GetUsageResponse:
        start = request.start_time.ToNanoseconds() / 1e9 if request.HasField("start_time") else None
        end = request.end_time.ToNanoseconds() / 1e9 if request.HasField("end_time") else None
        return await self._accounts.usage(caller, start, end)

    @unary
    async def CreateUser(
        self, request: account_pb2.CreateUserRequest, context: ServicerContext, caller: Caller
    ) -> account_pb2.CreateUserResponse:
        return await self._accounts.create_user(caller, request.name, request.admin)
