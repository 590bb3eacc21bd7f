"""The agents connected now: their outgoing message queues, liveness, and requests relayed to them."""

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
# After a server restart an agent gets this long (or the heartbeat timeout, if longer) to come back before its
# tasks are lost: the restart finds every agent backing off, retrying about every 2 s whatever the heartbeat.
RESTART_GRACE = 10.0


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


class AgentHub:
    """Sessions by agent id, and until when each absent machine may stay away before it is lost."""

    def __init__(self, heartbeat_interval: float) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.sessions: dict[str, AgentSession] = {}
        self.absent_until: dict[str, float] = {}  # monotonic deadlines
        self.changed = asyncio.Event()

    @property
    def timeout(self) -> float:
        return 3 * self.heartbeat_interval

    def attach(self, session: AgentSession) -> None:
        previous = self.sessions.get(session.agent_id)
        if previous is not None:
            previous.close()
        self.sessions[session.agent_id] = session
        self.absent_until.pop(session.agent_id, None)
        self.changed.set()
        self.changed = asyncio.Event()

    def detach(self, session: AgentSession) -> bool:
        """Ends a session; True when it was the agent's current one (not replaced by a reconnect)."""
        session.close()
        if self.sessions.get(session.agent_id) is session:
            del self.sessions[session.agent_id]
            self.absent_until[session.agent_id] = time.monotonic() + self.timeout
            return True
        return False

    def expect(self, agent_id: str) -> None:
        """A machine that has tasks but no session yet (after a server restart): lost if it stays away."""
        if agent_id not in self.sessions:
            self.absent_until.setdefault(agent_id, time.monotonic() + max(self.timeout, RESTART_GRACE))

    def overdue(self) -> list[str]:
        """Connected agents silent past the timeout and absent ones past their deadline; they are forgotten here."""
        now = time.monotonic()
        late = [agent_id for agent_id, s in self.sessions.items() if now - s.last_seen > self.timeout]
        for agent_id in late:
            self.sessions.pop(agent_id).close()
        gone = [agent_id for agent_id, until in self.absent_until.items() if now > until]
        for agent_id in gone:
            del self.absent_until[agent_id]
        return late + gone

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
