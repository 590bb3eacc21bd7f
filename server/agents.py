"""The agents connected now and the machines away: the session of each connected agent (the commands queued for
it, its liveness, requests relayed to it) and the hub that holds them.

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

from simplane.server import errors
from simplane.server.agent_messages import (
    CancelRead,
    Command,
    FileFrame,
    FileListing,
    ListFiles,
    OutputAck,
    ReadFile,
    ReportAck,
)

READ_WINDOW = 64  # FileData frames (up to 64 KiB each) held for one reader
_request_ids = itertools.count(1)


class _Closed:
    """The session ended: in its outbox, the end of its commands; in a reply queue, no answer will come."""


class _AcksDue:
    """In an outbox: the acknowledgements gathered since go now."""


class _Overflow:
    """In a reply queue: a relayed file read outran its reader."""


_CLOSED, _ACKS_DUE, _OVERFLOW = _Closed(), _AcksDue(), _Overflow()


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
    _outbox: asyncio.Queue[Command | _AcksDue | _Closed] = field(default_factory=asyncio.Queue)
    _replies: dict[str, _Replies] = field(default_factory=dict)
    _report_acks: dict[str, int] = field(default_factory=dict)
    _output_acks: dict[tuple[str, str], int] = field(default_factory=dict)

    def send(self, command: Command) -> None:
        self._outbox.put_nowait(command)

    async def commands(self) -> AsyncIterator[Command]:
        """What to send the agent, in order, until the session closes."""
        while not isinstance(item := await self._outbox.get(), _Closed):
            if isinstance(item, _AcksDue):
                for ack in self._take_acks():
                    yield ack
            else:
                yield item

    def heard(self) -> None:
        self.last_seen = time.monotonic()

    def ack_report(self, task_id: str, seq: int) -> None:
        """Acknowledgements wait in place until the stream is free, so a burst of them travels as few."""
        self._queue_acks()
        self._report_acks[task_id] = max(seq, self._report_acks.get(task_id, 0))

    def ack_output(self, task_id: str, stream: str, offset: int) -> None:
        self._queue_acks()
        key = (task_id, stream)
        self._output_acks[key] = max(offset, self._output_acks.get(key, 0))

    def _queue_acks(self) -> None:
        if not self._report_acks and not self._output_acks:
            self._outbox.put_nowait(_ACKS_DUE)

    def _take_acks(self) -> list[OutputAck | ReportAck]:
        acks: list[OutputAck | ReportAck] = [
            OutputAck(task_id, stream, offset) for (task_id, stream), offset in self._output_acks.items()
        ]
        acks.extend(ReportAck(task_id, seq) for task_id, seq in self._report_acks.items())
        self._output_acks.clear()
        self._report_acks.clear()
        return acks

    def close(self) -> None:
        self._outbox.put_nowait(_CLOSED)
        for replies in self._replies.values():
            replies.put_nowait(_CLOSED)

    def deliver(self, request_id: str, reply: FileListing | FileFrame) -> None:
        """Hands the agent's answer to the RPC waiting for it; answers nobody waits for are dropped."""
        replies = self._replies.get(request_id)
        if replies is not None:
            replies.put_nowait(reply)

    async def list_files(self, task_id: str, timeout: float = 10.0) -> FileListing:
        request_id = str(next(_request_ids))
        replies = self._replies[request_id] = _Replies()
        try:
            self.send(ListFiles(request_id, task_id))
            try:
                listing = await asyncio.wait_for(replies.get(), timeout)
            except TimeoutError:
                raise errors.Unavailable(f"machine {self.agent_id} did not answer in time") from None
        finally:
            del self._replies[request_id]
        if not isinstance(listing, FileListing):
            raise errors.Unavailable(f"machine {self.agent_id} disconnected")
        return listing

    async def read_file(
        self, task_id: str, path: str, offset: int, tail_lines: int, follow: bool
    ) -> AsyncIterator[FileFrame]:
        """Frames of the file from the agent until eof; cancels the read on the agent if the caller goes away.

        At most READ_WINDOW frames wait here for a slow caller. Past that the agent's read is cancelled and,
        once the caller has taken what waits, started again from where it got to: memory stays bounded and the
        caller sees one unbroken stream.
        """
        while True:
            request_id = str(next(_request_ids))
            replies = self._replies[request_id] = _Replies(READ_WINDOW)
            finished = False
            try:
                self.send(ReadFile(request_id, task_id, path, offset, tail_lines, follow))
                while True:
                    frame = await replies.get()
                    if isinstance(frame, _Overflow):
                        break
                    if not isinstance(frame, FileFrame):
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
                    self.send(CancelRead(request_id))


class _Replies:
    """The agent's answers to one request; with a `limit`, one frame more turns into an overflow, then all drop."""

    def __init__(self, limit: int | None = None) -> None:
        self._queue: asyncio.Queue[FileListing | FileFrame | _Closed | _Overflow] = asyncio.Queue()
        self._limit = limit
        self._overflowed = False

    def put_nowait(self, item: FileListing | FileFrame | _Closed) -> None:
        if self._overflowed:
            return
        if self._limit is not None and self._queue.qsize() >= self._limit and not isinstance(item, _Closed):
            self._overflowed = True
            self._queue.put_nowait(_OVERFLOW)
            return
        self._queue.put_nowait(item)

    async def get(self) -> FileListing | FileFrame | _Closed | _Overflow:
        return await self._queue.get()


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
