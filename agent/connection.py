"""The agent's link with the server: the Connect stream, kept up across server restarts and network loss."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import grpc

from simplane._api.v1 import agent_pb2, agent_pb2_grpc
from simplane._protocol.backoff import Backoff
from simplane._protocol.channel import channel_options
from simplane.agent import machine_stats
from simplane.agent.held_tasks import HeldTasks
from simplane.agent.machine_identity import REFUSED
from simplane.agent.sandbox import Sandbox
from simplane.agent.task_files import list_files, read_file
from simplane.agent.transfers import Transfers

log = logging.getLogger(__name__)

# Retrying cannot fix these: the credential or the hello is wrong, or the address is not a simplane server.
WELCOME_TIMEOUT = 10.0
DEFAULT_HEARTBEAT_INTERVAL = 5.0
# Output of one task sent before the next task gets its turn.
BATCH_BYTES = 256 * 1024
# Listings, file data and heartbeats waiting to be sent; readers of files wait when it is full.
CONTROL_QUEUE_SIZE = 64
CHANNEL_OPTIONS = channel_options(first_reconnect_ms=50, ping_without_calls=True)


class FatalConnectError(Exception):
    """The server refused the agent for a reason that retrying cannot fix."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


class _NoWelcome(Exception):
    """The server did not answer the hello with a welcome; the agent tries again."""


@dataclass(frozen=True)
class AgentIdentity:
    """What the agent says about itself in its hello."""

    agent_id: str  # the machine id Join gave
    machine_group: str
    hostname: str
    slots: int
    version: str


class ServerConnection:
    """Keeps a Connect stream to the server and reconnects with backoff when it breaks.

    The held tasks outlive the streams: they keep running and spooling while the agent is disconnected,
    and each new stream resends what the server has not stored.
    """

    def __init__(self, server: str, credential: str, identity: AgentIdentity, work_dir: Path, sandbox: Sandbox) -> None:
        self._server = server
        self._identity = identity
        self._metadata = (("authorization", f"Bearer {credential}"),)
        self._channel = grpc.aio.insecure_channel(server, options=CHANNEL_OPTIONS)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._wake = asyncio.Event()
        self.held = HeldTasks(work_dir, Transfers(self._stub, self._metadata), sandbox, on_unsent=self._wake.set)

    async def run(self) -> None:
        """Connects and reconnects until cancelled; raises FatalConnectError when the server refuses us."""
        backoff = Backoff()
        # One line per outage, not one per attempt.
        outage_reported = False
        while True:
            session = _Session(self._stub.Connect(metadata=self._metadata), self.held, self._wake)
            try:
                await session.run(self._hello(), backoff)
                reason = "the server closed the stream"
            except grpc.aio.AioRpcError as err:
                # Refused before the welcome: this agent may not connect. Later, a refused message (a file listing
                # the server cannot take, ...) ends only this stream: the agent connects again.
                if err.code() in REFUSED and not session.welcomed:
                    raise FatalConnectError(
                        f"the server at {self._server} refused the agent: {err.code().name}: {err.details()}",
                        err.code(),
                    ) from err
                reason = f"{err.code().name}: {err.details()}"
            except _NoWelcome as err:
                reason = str(err)
            if session.welcomed:
                outage_reported = False
            if not outage_reported:
                log.warning("no connection to %s (%s); retrying", self._server, reason)
                outage_reported = True
            await self._pause(backoff.next_delay())

    async def _pause(self, delay: float) -> None:
        """Waits `delay` before the next attempt; while the channel is down, only until it is up again.

        An attempt fails at once while gRPC waits out its own reconnect backoff, so sleeping our delay after that
        would add the two, keeping the agent (and the output of its tasks) away from a restarted server longer.
        """
        if self._channel.get_state() == grpc.ChannelConnectivity.READY:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._channel.channel_ready(), delay)

    async def close(self) -> None:
        """Kills the held tasks and closes the channel."""
        await self.held.shutdown()
        await self._channel.close()

    def _hello(self) -> agent_pb2.ConnectRequest:
        identity = self._identity
        return agent_pb2.ConnectRequest(
            hello=agent_pb2.AgentHello(
                agent_id=identity.agent_id,
                machine_group=identity.machine_group,
                hostname=identity.hostname,
                slots=identity.slots,
                held_tasks=self.held.held(),
                version=identity.version,
            )
        )


class _Session:
    """One Connect stream: hello and welcome, then commands in and messages out until it breaks.

    Everything leaving the agent goes through the one sender loop, in turn: a waiting control message
    (listing, file data, heartbeat), then the next task's batch of output and updates.
    """

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[agent_pb2.ConnectRequest, agent_pb2.ConnectResponse],
        held: HeldTasks,
        wake: asyncio.Event,
    ) -> None:
        self.welcomed = False
        self._call = call
        self._held = held
        self._wake = wake
        self._control: asyncio.Queue[agent_pb2.ConnectRequest] = asyncio.Queue(CONTROL_QUEUE_SIZE)
        self._reads: dict[str, asyncio.Task[None]] = {}
        self._listings: set[asyncio.Task[None]] = set()
        self._heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL

    async def run(self, hello: agent_pb2.ConnectRequest, backoff: Backoff) -> None:
        loops: list[asyncio.Task[None]] = []
        try:
            await self._call.write(hello)
            try:
                first = await asyncio.wait_for(self._call.read(), WELCOME_TIMEOUT)
            except TimeoutError:
                raise _NoWelcome(f"no welcome within {WELCOME_TIMEOUT:g} s") from None
            if not isinstance(first, agent_pb2.ConnectResponse):  # grpc.aio.EOF: the server closed the stream
                return
            if not first.HasField("welcome"):
                raise _NoWelcome(f"the server answered the hello with {first.WhichOneof('message')}")
            await self._welcome(first.welcome)
            backoff.reset()
            loops = [
                asyncio.create_task(self._receive()),
                asyncio.create_task(self._send()),
                asyncio.create_task(self._send_heartbeats()),
            ]
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            if self._call.done():
                # The stream ended. A read raises why (or returns EOF if the server closed it); a write that raced
                # the end raises only InvalidStateError, which must not stop the agent.
                await self._call.read()
                return
            for loop in done:
                loop.result()
        finally:
            tasks = (*loops, *self._reads.values(), *self._listings)
            for task in tasks:
                task.cancel()
            self._call.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _welcome(self, welcome: agent_pb2.AgentWelcome) -> None:
        self.welcomed = True
        interval = welcome.heartbeat_interval.seconds + welcome.heartbeat_interval.nanos / 1e9
        if interval > 0:
            self._heartbeat_interval = interval
        await self._held.resume(welcome.resumes)
        log.info("connected as %s", welcome.machine_id)

    async def _receive(self) -> None:
        held = self._held
        while isinstance(response := await self._call.read(), agent_pb2.ConnectResponse):  # else grpc.aio.EOF
            kind = response.WhichOneof("message")
            if kind == "output_ack":
                held.ack_output(response.output_ack)
            elif kind == "update_ack":
                held.ack_update(response.update_ack)
            elif kind == "assignment":
                await held.assign(response.assignment)
            elif kind == "kill":
                held.kill(response.kill)
            elif kind == "list_files":
                listing = asyncio.create_task(self._list_files(response.list_files))
                self._listings.add(listing)
                listing.add_done_callback(self._listings.discard)
            elif kind == "read_file":
                self._start_read(response.read_file)
            elif kind == "cancel_read":
                read = self._reads.pop(response.cancel_read.request_id, None)
                if read is not None:
                    read.cancel()

    async def _send(self) -> None:
        call = self._call
        control = self._control
        while True:
            sent = False
            if not control.empty():
                await call.write(control.get_nowait())
                sent = True
            batch = self._held.next_batch(BATCH_BYTES)
            if batch:
                for message in batch:
                    await call.write(message)
                sent = True
            if not sent:
                # Nothing is waiting, and nothing can change between the checks above and this clear.
                self._wake.clear()
                await self._wake.wait()

    async def _send_control(self, message: agent_pb2.ConnectRequest) -> None:
        await self._control.put(message)
        self._wake.set()

    async def _send_heartbeats(self) -> None:
        while True:
            await self._send_control(agent_pb2.ConnectRequest(heartbeat=machine_stats.heartbeat()))
            await asyncio.sleep(self._heartbeat_interval)

    async def _list_files(self, command: agent_pb2.ListFilesCommand) -> None:
        listing = agent_pb2.FileListing(request_id=command.request_id)
        run = self._held.get(command.task_id)
        if run is None:
            listing.error = f"task {command.task_id} is not on this agent"
        else:
            try:
                listing.files.extend(await asyncio.to_thread(list_files, run.work_dir))
            except OSError as err:
                listing.error = f"listing task {command.task_id}: {err}"
        await self._send_control(agent_pb2.ConnectRequest(file_listing=listing))

    def _start_read(self, command: agent_pb2.ReadFileCommand) -> None:
        previous = self._reads.pop(command.request_id, None)
        if previous is not None:
            previous.cancel()
        read = asyncio.create_task(self._read_file(command))
        self._reads[command.request_id] = read
        read.add_done_callback(partial(self._forget_read, command.request_id))

    def _forget_read(self, request_id: str, read: asyncio.Task[None]) -> None:
        if self._reads.get(request_id) is read:
            del self._reads[request_id]

    async def _read_file(self, command: agent_pb2.ReadFileCommand) -> None:
        run = self._held.get(command.task_id)
        if run is None:
            failure = agent_pb2.FileData(
                request_id=command.request_id, error=f"task {command.task_id} is not on this agent"
            )
            await self._send_control(agent_pb2.ConnectRequest(file_data=failure))
            return
        async for frame in read_file(run.work_dir, command, run.process_ended):
            await self._send_control(agent_pb2.ConnectRequest(file_data=frame))
