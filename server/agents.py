"""The agents connected now and the machines away: outgoing message queues, liveness, and requests relayed to
agents.

A machine whose agent falls silent past the heartbeat timeout (or whose stream closed that long ago) is
unreachable: its tasks may well still run there, so they keep their status and only carry a warning. It is lost,
with its tasks, only once it has been away for the grace period (`lost_after`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from simplane._api.v1 import agent_pb2
from simplane.server import errors

_CLOSE = None  # put in an outbox to end the session's stream
ACKS = "acks"  # put in an outbox to send the acknowledgements gathered since
_OVERFLOW = object()  # a relayed file read outran its reader
READ_WINDOW = 64  # FileData frames (up to 64 KiB each) held for one reader
_request_ids = itertools.count(1)


@dataclass
class AgentSession:
    agent_id: str
    machine_group: str
    hostname: str
    slots: int
    connected_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    load: float = 0.0
    memory_total_bytes: int = 0
    memory_used_bytes: int = 0
    outbox: asyncio.Queue[agent_pb2.ConnectResponse | str | None] = field(default_factory=asyncio.Queue)
    _replies: dict[str, asyncio.Queue] = field(default_factory=dict)
    _update_acks: dict[str, int] = field(default_factory=dict)
    _output_acks: dict[tuple[str, int], int] = field(default_factory=dict)

    def send(self, message: agent_pb2.ConnectResponse) -> None:
        self.outbox.put_nowait(message)

    def ack_update(self, task_id: str, seq: int) -> None:
        """Acknowledgements wait in place until the stream is free, so a burst of them travels as few."""
        self._queue_acks()
        self._update_acks[task_id] = max(seq, self._update_acks.get(task_id, 0))

    def ack_output(self, task_id: str, stream: int, offset: int) -> None:
        self._queue_acks()
        key = (task_id, stream)
        self._output_acks[key] = max(offset, self._output_acks.get(key, 0))

    def _queue_acks(self) -> None:
        if not self._update_acks and not self._output_acks:
            self.outbox.put_nowait(ACKS)

    def take_acks(self) -> list[agent_pb2.ConnectResponse]:
        acks = [
            agent_pb2.ConnectResponse(output_ack=agent_pb2.OutputAck(task_id=task_id, stream=stream, offset=offset))
            for (task_id, stream), offset in self._output_acks.items()
        ]
        acks.extend(
            agent_pb2.ConnectResponse(update_ack=agent_pb2.TaskUpdateAck(task_id=task_id, seq=seq))
            for task_id, seq in self._update_acks.items()
        )
        self._output_acks.clear()
        self._update_acks.clear()
        return acks

    def close(self) -> None:
        self.outbox.put_nowait(_CLOSE)
        for replies in self._replies.values():
            replies.put_nowait(_CLOSE)

    def deliver(self, request_id: str, reply: object) -> None:
        """Hands the agent's answer to the RPC waiting for it; answers nobody waits for are dropped."""
        replies = self._replies.get(request_id)
        if replies is not None:
            replies.put_nowait(reply)

    async def list_files(self, task_id: str, timeout: float = 10.0) -> agent_pb2.FileListing:
        request_id = str(next(_request_ids))
        replies: asyncio.Queue = asyncio.Queue()
        self._replies[request_id] = replies
        try:
            self.send(
                agent_pb2.ConnectResponse(list_files=agent_pb2.ListFilesCommand(request_id=request_id, task_id=task_id))
            )
            try:
                listing = await asyncio.wait_for(replies.get(), timeout)
            except TimeoutError:
                raise errors.Unavailable(f"machine {self.agent_id} did not answer in time") from None
        finally:
            del self._replies[request_id]
        if listing is _CLOSE:
            raise errors.Unavailable(f"machine {self.agent_id} disconnected")
        return listing

    async def read_file(
        self, task_id: str, path: str, offset: int, tail_lines: int, follow: bool
    ) -> AsyncIterator[agent_pb2.FileData]:
        """FileData frames from the agent until eof; cancels the read on the agent if the caller goes away.

        At most READ_WINDOW frames wait here for a slow caller. Past that the agent's read is cancelled and,
        once the caller has taken what waits, started again from where it got to: memory stays bounded and the
        caller sees one unbroken stream.
        """
        while True:
            request_id = str(next(_request_ids))
            replies: asyncio.Queue = asyncio.Queue()
            self._replies[request_id] = _Window(replies, READ_WINDOW)
            finished = False
            command = agent_pb2.ReadFileCommand(
                request_id=request_id, task_id=task_id, path=path, offset=offset, tail_lines=tail_lines, follow=follow
            )
            try:
                self.send(agent_pb2.ConnectResponse(read_file=command))
                while True:
                    frame = await replies.get()
                    if frame is _OVERFLOW:
                        break
                    if frame is _CLOSE:
                        finished = True
                        raise errors.Unavailable(f"machine {self.agent_id} disconnected")
                    if frame.error:
                        finished = True
                        raise errors.NotFound(f"file {path!r} of task {task_id}: {frame.error}")
                    yield frame
                    offset, tail_lines = frame.offset + len(frame.data), 0
                    if frame.eof:
                        finished = True
                        return
            finally:
                del self._replies[request_id]
                if not finished:
                    self.send(agent_pb2.ConnectResponse(cancel_read=agent_pb2.CancelReadCommand(request_id=request_id)))


class _Window:
    """A reply queue holding at most `limit` frames; one more turns it into an overflow marker, then it drops all."""

    def __init__(self, queue: asyncio.Queue, limit: int) -> None:
        self._queue = queue
        self._limit = limit
        self._overflowed = False

    def put_nowait(self, item: object) -> None:
        if self._overflowed:
            return
        if self._queue.qsize() >= self._limit and item is not _CLOSE:
            self._overflowed = True
            item = _OVERFLOW
        self._queue.put_nowait(item)


@dataclass
class Absence:
    """A machine with no session: since when it was last heard from, and what ListMachines shows of it."""

    machine_id: str
    machine_group: str
    since: float  # monotonic
    since_time: float  # the same moment as Unix time, for people
    last_session: AgentSession | None = None  # None after a server restart, until the agent is back
    unreachable: bool = False  # past the heartbeat timeout: its tasks carry a warning


class AgentHub:
    """Sessions by agent id, and the machines away, each until it is back or its grace period runs out."""

    def __init__(self, heartbeat_interval: float, lost_after: float) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.lost_after = lost_after
        self.sessions: dict[str, AgentSession] = {}
        self.away: dict[str, Absence] = {}
        self.changed = asyncio.Event()

    @property
    def timeout(self) -> float:
        """Silence after which a machine is unreachable."""
        return 3 * self.heartbeat_interval

    @property
    def grace(self) -> float:
        """Absence after which a machine is lost: `lost_after`, and never before it was unreachable."""
        return max(self.lost_after, self.timeout)

    def attach(self, session: AgentSession) -> None:
        previous = self.sessions.get(session.agent_id)
        if previous is not None:
            previous.close()
        self.sessions[session.agent_id] = session
        self.away.pop(session.agent_id, None)
        self.changed.set()
        self.changed = asyncio.Event()

    def detach(self, session: AgentSession) -> bool:
        """Ends a session; True when it was the agent's current one (not replaced by a reconnect)."""
        session.close()
        if self.sessions.get(session.agent_id) is not session:
            return False
        del self.sessions[session.agent_id]
        self._leave(session)
        return True

    def expect(self, machine_id: str, machine_group: str) -> None:
        """A machine that has tasks but no session yet (after a server restart) gets the whole grace period."""
        if machine_id not in self.sessions and machine_id not in self.away:
            self.away[machine_id] = Absence(machine_id, machine_group, time.monotonic(), time.time())

    def check(self) -> tuple[list[Absence], list[Absence]]:
        """The machines that became unreachable since the last check, and those lost (forgotten here).

        A connected agent silent past the timeout has its session closed and is away from its last message on.
        """
        now = time.monotonic()
        for session in [s for s in self.sessions.values() if now - s.last_seen > self.timeout]:
            del self.sessions[session.agent_id]
            session.close()
            self._leave(session)
        unreachable, lost = [], []
        for absence in list(self.away.values()):
            if now - absence.since > self.grace:
                del self.away[absence.machine_id]
                lost.append(absence)
            elif not absence.unreachable and now - absence.since > self.timeout:
                absence.unreachable = True
                unreachable.append(absence)
        return unreachable, lost

    def _leave(self, session: AgentSession) -> None:
        silent_for = time.monotonic() - session.last_seen
        self.away[session.agent_id] = Absence(
            session.agent_id, session.machine_group, session.last_seen, time.time() - silent_for, session
        )

    def session(self, agent_id: str) -> AgentSession | None:
        return self.sessions.get(agent_id)

    async def wait_for_agents(self, machine_group: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while sum(1 for s in self.sessions.values() if s.machine_group == machine_group) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return False
        return True
