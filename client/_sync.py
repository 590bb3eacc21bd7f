# Generated from client/_async.py by scripts/generate.py (unasync). Do not edit: edit that file and rerun.
"""The client: `Client`, its services (`client.tasks`, ...) and the `Task` handle.

client/_async.py is the one source of both clients: scripts/generate.py rewrites it into client/_sync.py (unasync).
Whatever must differ between the two flavours lives in the pair of modules client/_io_*.py.
"""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import grpc
from google.protobuf.message import Message

from simplane import _base
from simplane._api.v1 import (
    account_pb2,
    account_pb2_grpc,
    machine_group_pb2,
    machine_group_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)
from simplane._config import resolve_config
from simplane._durations import Duration
from simplane._io_sync import Channel, UnaryCall, channel_ready, open_channel, run_blocking, sleep
from simplane._protocol.task_outputs import outputs_prefix
from simplane._transfer import DownloadWriter, Progress, plan_upload, upload_requests
from simplane.errors import Timeout, Unavailable, translate_rpc_error, translating_rpc_errors
from simplane.models import (
    ApiKey,
    LogLine,
    MachineGroupInfo,
    MachineInfo,
    StoredFile,
    TaskEvent,
    TaskFile,
    TaskInfo,
    TaskStatus,
    User,
)

__all__ = ["Account", "Client", "MachineGroups", "Storage", "Task", "Tasks"]

Command = list[str] | str
Request = TypeVar("Request", bound=Message)
Response = TypeVar("Response", bound=Message)


def _always() -> bool:
    return True


class _Stubs:
    def __init__(self, channel: Channel) -> None:
        self.tasks = task_pb2_grpc.TaskServiceStub(channel)
        self.storage = storage_pb2_grpc.StorageServiceStub(channel)
        self.account = account_pb2_grpc.AccountServiceStub(channel)
        self.machine_groups = machine_group_pb2_grpc.MachineGroupServiceStub(channel)


class _Connection:
    """The channel, the stubs and the key. Every call goes through here, so gRPC errors become
    SimplaneErrors in one place. The channel is made on first use (open_channel)."""

    def __init__(self, address: str, api_key: str | None, retry_timeout: float) -> None:
        self.address = address
        self.metadata = _base.auth_metadata(api_key)
        self.retry_timeout = retry_timeout
        self._channel: Channel | None = None
        self._stubs: _Stubs | None = None
        # The blocking client may be shared by threads (the CLI's status thread): one channel, opened once.
        self._opening = threading.Lock()
        self.closed = False

    @property
    def channel(self) -> Channel:
        if self.closed:
            raise RuntimeError("this simplane client is closed")
        with self._opening:
            if self._channel is None:
                self._channel = open_channel(self.address, _base.CHANNEL_OPTIONS)
            return self._channel

    @property
    def stubs(self) -> _Stubs:
        channel = self.channel
        with self._opening:
            if self._stubs is None:
                self._stubs = _Stubs(channel)
            return self._stubs

    def call(
        self,
        method: UnaryCall[Request, Response],
        request: Request,
        *,
        retry: bool = False,
        deadline: float | None = None,
    ) -> Response:
        """One unary call; with `retry` (safe to repeat) it is repeated while the server answers UNAVAILABLE,
        for up to the client's retry_timeout. Past the monotonic `deadline`, when given, it raises Timeout."""
        left = _base.remaining(deadline)
        retrying = (
            _base.Retrying(self.retry_timeout if left is None else min(self.retry_timeout, left)) if retry else None
        )
        while True:
            try:
                return method(request, metadata=self.metadata, timeout=_base.remaining(deadline))
            except grpc.RpcError as error:
                delay = retrying.next_delay(error) if retrying is not None else None
                if delay is None:
                    raise translate_rpc_error(error) from error
            sleep(delay)

    def stream_once(self, method: Callable[..., Any], request: Message) -> Any:
        """Opens a server stream that is not resumed; iterate it inside translating_rpc_errors()."""
        return method(request, metadata=self.metadata)

    def stream(
        self,
        method: Callable[..., Any],
        next_request: Callable[[], Message],
        *,
        reopen: Callable[[], bool] = _always,
        restart: Callable[[], None] | None = None,
        deadline: float | None = None,
    ) -> Generator[Any, None]:
        """Yields a server stream's responses, reopening it with `next_request()` after it drops.

        A stream reopens after UNAVAILABLE once it has delivered a frame (so an unreachable server fails fast),
        and after a clean close when `reopen()` says it is unfinished. OUT_OF_RANGE calls `restart` (when
        given) and reopens at once. Past the monotonic `deadline`, raises Timeout.
        """
        reconnect = _base.Reconnect()
        connected = False
        while True:
            failure: grpc.RpcError | None = None
            call = method(
                next_request(),
                metadata=self.metadata,
                timeout=_base.remaining(deadline),
                wait_for_ready=reconnect.attempted or None,
            )
            try:
                for response in call:
                    connected = True
                    reconnect.progressed()
                    yield response
                if not reopen():
                    return
            except grpc.RpcError as error:
                recovery = _base.recover_stream(
                    error, connected=connected, can_restart=restart is not None, has_deadline=deadline is not None
                )
                if recovery == "restart" and restart is not None:
                    restart()
                    continue
                failure = error
            finally:
                call.cancel()
            self._await_reconnect(reconnect, deadline, failure)

    def _await_reconnect(self, reconnect: _base.Reconnect, deadline: float | None, failure: Exception | None) -> None:
        delay = reconnect.next_delay()
        if delay is None:
            raise Unavailable(f"lost the stream from {self.address} and could not reopen it") from failure
        left = _base.remaining(deadline)
        if left is not None and left <= delay:
            sleep(left)
            raise Timeout("the wait timed out")
        sleep(delay)
        limit = reconnect.remaining() if left is None else min(reconnect.remaining(), left - delay)
        if not channel_ready(self.channel, limit):
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout("the wait timed out")
            raise Unavailable(f"lost the stream from {self.address} and could not reconnect") from failure

    def close(self) -> None:
        self.closed = True
        if self._channel is not None:
            channel, self._channel = self._channel, None
            channel.close()


def _upload(
    connection: _Connection, path: str | os.PathLike[str], prefix: str, progress: Progress | None, field: str
) -> str:
    plan = run_blocking(plan_upload, path, field)
    failures: list[Exception] = []

    def requests() -> Iterator[storage_pb2.UploadFilesRequest]:
        # gRPC reads this iterator apart from the call and reports a failure in it as a cancelled call;
        # keep the real exception so it can be raised instead.
        chunks = upload_requests(plan, prefix)
        done = 0
        try:
            if progress is not None:
                progress(0, plan.total_bytes)
            while (request := run_blocking(next, chunks, None)) is not None:
                yield request
                done += len(request.chunk.data)
                if progress is not None:
                    progress(done, plan.total_bytes)
        except Exception as error:
            failures.append(error)
            raise
        finally:
            chunks.close()  # the open file now, not at garbage collection (the kept error holds this frame)

    try:
        with translating_rpc_errors():
            response = connection.stubs.storage.UploadFiles(requests(), metadata=connection.metadata)
    except BaseException:
        if failures:
            raise failures[0] from None
        raise
    return response.prefix or prefix


def _download(
    connection: _Connection, prefix: str, directory: str | os.PathLike[str], progress: Progress | None
) -> list[Path]:
    total = 0
    if progress is not None:
        listing = connection.call(
            connection.stubs.storage.ListFiles, storage_pb2.ListFilesRequest(prefix=prefix), retry=True
        )
        total = sum(file.size for file in listing.files)
        progress(0, total)
    writer = DownloadWriter(directory)
    done = 0
    call = connection.stream_once(
        connection.stubs.storage.DownloadFiles, storage_pb2.DownloadFilesRequest(prefix=prefix)
    )
    try:
        with translating_rpc_errors():
            for response in call:
                done += run_blocking(writer.write, response.chunk)
                if progress is not None:
                    progress(done, total)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise
    finally:
        call.cancel()


class Task:
    """A handle on one task. Making one costs nothing (`client.task(id)`); each method makes the calls it needs.

    `last_info` is the state from the most recent call this handle made (None before any).
    """

    def __init__(self, connection: _Connection, task_id: str, info: TaskInfo | None = None) -> None:
        self._connection = connection
        self.id = task_id
        self.last_info = info

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"

    @property
    def status(self) -> TaskStatus:
        """The current status, fetched from the server."""
        info = self.info()
        return info.status

    @property
    def exit_code(self) -> int | None:
        """The command's exit code, fetched from the server; None until the command exits."""
        info = self.info()
        return info.exit_code

    def info(self) -> TaskInfo:
        return self._info(None)

    def _info(self, deadline: float | None) -> TaskInfo:
        request = task_pb2.GetTaskRequest(task_id=self.id)
        response = self._connection.call(self._connection.stubs.tasks.GetTask, request, retry=True, deadline=deadline)
        self.last_info = TaskInfo.from_proto(response.task)
        return self.last_info

    def wait(self, timeout: float | None = None) -> TaskStatus:
        """Waits until the task ends and returns its terminal status; raises simplane.Timeout after `timeout`
        seconds. Follows the status stream (no polling) and rides out a server restart."""
        states = self._states(None if timeout is None else time.monotonic() + timeout)
        try:
            for _ in states:
                pass
        except Timeout:
            raise Timeout(f"task {self.id} did not end within {timeout} s") from None
        finally:
            states.close()
        assert self.last_info is not None
        return self.last_info.status

    def watch(self) -> Iterator[TaskInfo]:
        """The task's state now, then after each change, ending with its terminal state."""
        return self._states(None)

    def _states(self, deadline: float | None) -> Generator[TaskInfo, None]:
        progress = _base.TaskProgress(self.id)
        cursor = progress.cursor
        responses = self._connection.stream(
            self._connection.stubs.tasks.WatchTasks, cursor.request, restart=cursor.restart, deadline=deadline
        )
        try:
            for response in responses:
                event = cursor.event(response)
                if event is None:
                    continue
                state = progress.state(event)
                if state is None and progress.missing_from_snapshot(event):
                    info = self._info(deadline)
                    state = info if progress.advance(info) else None
                if state is not None:
                    self.last_info = state
                    yield state
                    if progress.ended:
                        return
        finally:
            responses.close()

    def logs(
        self,
        *,
        follow: bool = False,
        stream: Literal["all", "stdout", "stderr"] = "all",
        lines: int | None = None,
        file: str | None = None,
    ) -> Iterator[LogLine]:
        """The task's output as lines, in order per stream.

        `follow` keeps reading until the task ends; `lines` starts at the last N lines; `file` reads a file of
        the working directory instead of stdout/stderr. After a dropped connection or a server restart the read
        resumes where it stopped: no line is lost or repeated.
        """
        tail = _base.LogTail(self.id, follow=follow, stream=stream, lines=lines, file=file)
        return self._lines(tail)

    def _lines(self, tail: _base.LogTail) -> Generator[LogLine, None]:
        frames = self._connection.stream(self._connection.stubs.tasks.TailLogs, tail.request, reopen=tail.should_reopen)
        try:
            for frame in frames:
                for line in tail.lines(frame):
                    yield line
                if tail.ended:
                    return
            for line in tail.finish():
                yield line
        finally:
            frames.close()

    def kill(self, grace_period: Duration | None = None) -> TaskInfo:
        """Stops the task: SIGTERM, then SIGKILL after `grace_period` (server default 10 s).
        FailedPrecondition if it already ended."""
        request = _base.kill_request(self.id, grace_period)
        response = self._connection.call(self._connection.stubs.tasks.KillTask, request)
        self.last_info = TaskInfo.from_proto(response.task)
        return self.last_info

    def list_files(self) -> list[TaskFile]:
        """The working directory while the task runs; its outputs once it ended."""
        request = task_pb2.ListTaskFilesRequest(task_id=self.id)
        response = self._connection.call(self._connection.stubs.tasks.ListTaskFiles, request, retry=True)
        return [TaskFile.from_proto(file) for file in response.files]

    def download_outputs(self, dir: str | os.PathLike[str], progress: Progress | None = None) -> list[Path]:
        """Downloads the task's outputs into `dir` (created if needed); returns the files written."""
        return _download(self._connection, outputs_prefix(self.id), dir, progress)


class Tasks:
    """`client.tasks`: submit, find, list and watch tasks."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def submit(
        self,
        command: Command,
        *,
        inputs: str | os.PathLike[str] | None = None,
        machine_group: str = "local",
        name: str = "",
        project: str = "",
        time_to_live: Duration | None = None,
        cpus: int = 1,
        env: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> Task:
        """Submits a command (a list, or a string split like a shell would) to run on a machine group.

        `inputs` (a directory or a file) is uploaded first and staged into the task's working directory;
        `progress(done_bytes, total_bytes)` follows that upload. `time_to_live` takes "10m", "1h30m", seconds
        or a timedelta.
        """
        request = _base.submit_request(
            command,
            inputs="",
            machine_group=machine_group,
            name=name,
            project=project,
            time_to_live=time_to_live,
            cpus=cpus,
            env=env,
        )
        if inputs is not None:
            request.inputs = _upload(self._connection, inputs, _base.inputs_prefix(), progress, "inputs")
        response = self._connection.call(self._connection.stubs.tasks.SubmitTask, request, retry=True)
        return Task(self._connection, response.task.id, TaskInfo.from_proto(response.task))

    def get(self, task_id: str) -> Task:
        """A handle on an existing task, with its state fetched; NotFound if there is no such task."""
        task = Task(self._connection, task_id)
        task.info()
        return task

    def list(
        self,
        *,
        status: _base.StatusFilter = None,
        project: str | None = None,
        machine_group: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        search: str | None = None,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[TaskInfo]:
        """Tasks newest first, fetched page by page as the iterator advances. `status` takes one status or
        several (members or names); `search` matches an ID prefix or part of the name."""
        listing = _base.TaskListing(
            status=status,
            project=project,
            machine_group=machine_group,
            created_after=created_after,
            created_before=created_before,
            search=search,
            limit=limit,
            page_size=page_size,
        )
        return self._pages(listing)

    def _pages(self, listing: _base.TaskListing) -> Generator[TaskInfo, None]:
        while not listing.done:
            response = self._connection.call(self._connection.stubs.tasks.ListTasks, listing.request(), retry=True)
            for info in listing.page(response):
                yield info

    def watch(
        self,
        *,
        task_ids: builtins.list[str] | None = None,
        project: str | None = None,
        machine_group: str | None = None,
    ) -> Iterator[TaskEvent]:
        """A snapshot of the matching tasks, its end, then every change, live. Resumes after a dropped connection
        without missing a change; if the server no longer has the point to resume from, a new snapshot follows."""
        cursor = _base.WatchCursor(task_ids=task_ids, project=project, machine_group=machine_group)
        return self._events(cursor)

    def _events(self, cursor: _base.WatchCursor) -> Generator[TaskEvent, None]:
        responses = self._connection.stream(
            self._connection.stubs.tasks.WatchTasks, cursor.request, restart=cursor.restart
        )
        try:
            for response in responses:
                event = cursor.event(response)
                if event is not None:
                    yield event
        finally:
            responses.close()


class Storage:
    """`client.storage`: the caller's files on the server (task inputs and outputs)."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def upload(self, path: str | os.PathLike[str], prefix: str | None = None, progress: Progress | None = None) -> str:
        """Uploads a directory's tree (or one file) under `prefix` (default: a fresh "inputs/<id>/");
        returns the prefix."""
        return _upload(self._connection, path, prefix or _base.inputs_prefix(), progress, "path")

    def download(
        self, prefix: str, dir: str | os.PathLike[str], progress: Progress | None = None
    ) -> builtins.list[Path]:
        """Downloads every file under `prefix` into `dir`, paths relative to the prefix; returns the files."""
        return _download(self._connection, prefix, dir, progress)

    def list(self, prefix: str = "") -> builtins.list[StoredFile]:
        request = storage_pb2.ListFilesRequest(prefix=prefix)
        response = self._connection.call(self._connection.stubs.storage.ListFiles, request, retry=True)
        return [StoredFile.from_proto(file) for file in response.files]


class Account:
    """`client.account`: who the caller is, their API keys, and (for admins) users."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def whoami(self) -> User:
        response = self._connection.call(self._connection.stubs.account.WhoAmI, account_pb2.WhoAmIRequest(), retry=True)
        return User.from_proto(response.user)

    def create_user(self, name: str, admin: bool = False) -> tuple[User, str]:
        """Creates a user (admins only); returns it with its first API key's secret, shown only now."""
        request = account_pb2.CreateUserRequest(name=name, admin=admin)
        response = self._connection.call(self._connection.stubs.account.CreateUser, request)
        return User.from_proto(response.user), response.secret

    def create_api_key(self, description: str = "") -> tuple[ApiKey, str]:
        """A new key for the caller; returns it with its secret, shown only now."""
        request = account_pb2.CreateApiKeyRequest(description=description)
        response = self._connection.call(self._connection.stubs.account.CreateApiKey, request)
        return ApiKey.from_proto(response.api_key), response.secret

    def list_api_keys(self) -> list[ApiKey]:
        request = account_pb2.ListApiKeysRequest()
        response = self._connection.call(self._connection.stubs.account.ListApiKeys, request, retry=True)
        return [ApiKey.from_proto(key) for key in response.api_keys]

    def revoke_api_key(self, id: str) -> ApiKey:
        request = account_pb2.RevokeApiKeyRequest(id=id)
        response = self._connection.call(self._connection.stubs.account.RevokeApiKey, request)
        return ApiKey.from_proto(response.api_key)


class MachineGroups:
    """`client.machine_groups`: the groups of machines tasks run on."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def list(self) -> builtins.list[MachineGroupInfo]:
        request = machine_group_pb2.ListMachineGroupsRequest()
        response = self._connection.call(self._connection.stubs.machine_groups.ListMachineGroups, request, retry=True)
        return [MachineGroupInfo.from_proto(group) for group in response.machine_groups]

    def machines(self, group: str | None = None) -> builtins.list[MachineInfo]:
        """The machines of one group, or of every group."""
        request = machine_group_pb2.ListMachinesRequest(machine_group=group or "")
        response = self._connection.call(self._connection.stubs.machine_groups.ListMachines, request, retry=True)
        return [MachineInfo.from_proto(machine) for machine in response.machines]

    def create_agent_token(self, machine_group: str = "local") -> str:
        """A secret with which `simplane agent` joins the group (admins only); shown only now."""
        request = machine_group_pb2.CreateAgentTokenRequest(machine_group=machine_group)
        response = self._connection.call(self._connection.stubs.machine_groups.CreateAgentToken, request)
        token: str = response.token
        return token


class Client:
    """A connection to a simplane server.

        import simplane
        with simplane.Client() as client:   # SIMPLANE_ADDRESS / SIMPLANE_API_KEY, else the config file
            task = client.tasks.submit(["python", "solve.py"], inputs="case/", time_to_live="10m")
            for line in task.logs(follow=True):
                print(line.stream, line.text)
            print(task.wait())

    The address defaults to 127.0.0.1:50051. The channel connects lazily. Calls that are safe to repeat (reads,
    and submits, which carry a request id so that a repeat returns the task the first one made) are retried
    while the server answers UNAVAILABLE (restarting, or its database away), with backoff from 0.1 s to 2 s,
    for up to `retry_timeout` seconds (0: never); then they raise simplane.Unavailable.
    """

    def __init__(
        self,
        address: str | None = None,
        api_key: str | None = None,
        *,
        retry_timeout: float = _base.DEFAULT_RETRY_TIMEOUT,
    ) -> None:
        config = resolve_config(address, api_key)
        self.address = config.address
        self._connection = _Connection(config.address, config.api_key, retry_timeout)
        self.tasks = Tasks(self._connection)
        self.storage = Storage(self._connection)
        self.account = Account(self._connection)
        self.machine_groups = MachineGroups(self._connection)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self.address!r})"

    def task(self, task_id: str) -> Task:
        """A handle on a task, without asking the server anything."""
        return Task(self._connection, task_id)

    def close(self) -> None:
        """Closes the channel; any call after this raises RuntimeError."""
        self._connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
