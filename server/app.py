"""The server: wires the core together and serves it over gRPC, with health checking and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from simplane._api.v1 import (
    account_pb2,
    account_pb2_grpc,
    agent_pb2,
    agent_pb2_grpc,
    machine_group_pb2,
    machine_group_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)
from simplane._protocol.channel import message_size_options
from simplane.server.accounts import Accounts
from simplane.server.agents import AgentHub
from simplane.server.auth import Authenticator
from simplane.server.disk_space import DataDirSpace
from simplane.server.event_stream import EventStream
from simplane.server.file_store import FileStore
from simplane.server.log_store import LogStore
from simplane.server.log_tail import LogTail
from simplane.server.machine_groups import MachineGroups
from simplane.server.scheduler import Scheduler
from simplane.server.servicers.account_service import AccountService
from simplane.server.servicers.agent_service import AgentService
from simplane.server.servicers.machine_group_service import MachineGroupService
from simplane.server.servicers.storage_service import StorageService
from simplane.server.servicers.task_service import TaskService
from simplane.server.status import TolerantDecoding
from simplane.server.store.database import Database
from simplane.server.task_files import TaskFiles
from simplane.server.task_watch import TaskWatch
from simplane.server.tasks import TaskRegistry

log = logging.getLogger(__name__)

# How long stopping waits for the task changes still being committed; a hung database is not waited for longer.
SETTLE_TIMEOUT = 3.0


@dataclass
class ServerSettings:
    data_dir: Path
    database_url: str
    disable_auth: bool = False
    # How often agents and idle streams send heartbeats; an agent silent for three intervals is unreachable.
    heartbeat_interval: float = 5.0
    # How long a machine may stay away (from its last message on) before its tasks are LOST.
    machine_lost_after: float = 600.0
    max_active_tasks: int = 10_000


class ServerApp:
    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.database = Database(settings.database_url)
        self.database.migrate()
        self.authenticator = Authenticator(self.database, disabled=settings.disable_auth)
        self.accounts = Accounts(self.database, self.authenticator, max_active_tasks=settings.max_active_tasks)
        self.events = EventStream(self.database)
        self.scheduler = Scheduler()
        self.hub = AgentHub(settings.heartbeat_interval, settings.machine_lost_after)
        self.groups = MachineGroups(self.database, self.hub, self.scheduler)
        space = DataDirSpace(settings.data_dir)
        self.logs = LogStore(settings.data_dir / "logs", space)
        self.files = FileStore(self.database, settings.data_dir / "files", space)
        self.tasks = TaskRegistry(
            self.database,
            self.events,
            self.scheduler,
            self.hub,
            self.logs,
            self.groups,
            self.files,
            max_active_tasks=settings.max_active_tasks,
        )
        self.task_files = TaskFiles(self.hub, self.files)
        self._server: grpc.aio.Server | None = None
        self._monitor: asyncio.Task[None] | None = None

    async def start(self, address: str) -> int:
        """Loads state, binds address (port 0 picks one) and serves; returns the bound port."""
        self.groups.load()
        self.events.load()
        self.tasks.load()
        self.tasks.start_timers()
        server = grpc.aio.server(
            interceptors=[TolerantDecoding()],
            options=[
                ("grpc.so_reuseport", 0),
                *message_size_options(),
                # Clients and agents ping quiet connections every 20 s; allow it.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ],
        )
        task_pb2_grpc.add_TaskServiceServicer_to_server(
            TaskService(
                self.authenticator,
                self.tasks,
                TaskWatch(self.database, self.events, self.settings.heartbeat_interval),
                LogTail(self.tasks, self.logs, self.task_files, self.settings.heartbeat_interval),
                self.task_files,
            ),
            server,
        )
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            AgentService(self.authenticator, self.tasks, self.hub, self.files, self.groups), server
        )
        storage_pb2_grpc.add_StorageServiceServicer_to_server(
            StorageService(self.authenticator, self.files, self.tasks), server
        )
        account_pb2_grpc.add_AccountServiceServicer_to_server(
            AccountService(self.authenticator, self.accounts, self.tasks), server
        )
        machine_group_pb2_grpc.add_MachineGroupServiceServicer_to_server(
            MachineGroupService(self.authenticator, self.groups, self.accounts, self.tasks),
            server,
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        services = [
            module.DESCRIPTOR.services_by_name[name].full_name
            for module, name in (
                (task_pb2, "TaskService"),
                (agent_pb2, "AgentService"),
                (storage_pb2, "StorageService"),
                (account_pb2, "AccountService"),
                (machine_group_pb2, "MachineGroupService"),
            )
        ]
        reflection.enable_server_reflection([*services, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:  # what grpcio raises where older releases returned 0
            port = 0
        if port == 0:
            raise OSError("the address is in use, or is not one of this machine's")
        await server.start()
        for name in ["", *services]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        self._monitor = asyncio.create_task(self._watch_machines())
        return port

    async def _watch_machines(self) -> None:
        """Marks machines silent past the heartbeat timeout unreachable, and those away past the grace period lost
        with their tasks."""
        while True:
            await asyncio.sleep(self.hub.heartbeat_interval / 2)
            unreachable, lost = self.hub.check()
            for absence in unreachable:
                log.warning(
                    "machine %s unreachable; its tasks are lost unless it is back within %g s",
                    absence.machine_id,
                    self.hub.grace - (time.monotonic() - absence.since),
                )
                self.tasks.machine_unreachable(absence.machine_id, absence.since_time)
            for absence in lost:
                log.warning("machine %s stayed away past the grace period of %g s", absence.machine_id, self.hub.grace)
                await self.tasks.machine_lost(absence.machine_id, absence.since_time)

    async def stop(self, grace: float = 1.0) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for session in list(self.hub.sessions.values()):
            session.close()
        if self._server is not None:
            await self._server.stop(grace)
        try:
            await asyncio.wait_for(self.events.settled(), SETTLE_TIMEOUT)
        except TimeoutError:
            log.error("task changes were still being stored after %.0f s; stopping without them", SETTLE_TIMEOUT)
        self.logs.close()
        self.database.close()
