"""The HTTP address of `simplane up`: gRPC-web calls, their streams and cancellation, CORS, and the console files.

Everything goes over raw HTTP/1.1 (http.client or a socket), as a browser would send it.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.client
import os
import select
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import TypeVar

import pytest
from cluster import CLI, READY_LINE, base_env, descendants
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from waiting import eventually

import simplane.server
from simplane._api.v1 import account_pb2, agent_pb2, storage_pb2, task_pb2
from simplane.server import grpc_web

DEADLINE_EXCEEDED, NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAUTHENTICATED = 4, 5, 3, 8, 12, 16
BUNDLE = Path(simplane.server.__file__).resolve().parent / "console_bundle"  # the sources', as the server reads
TASKS = "/simplane.v1.TaskService/"
M = TypeVar("M", bound=Message)


# --- a gRPC-web client, the way a browser speaks it ------------------------------------------------------


def frame(message: Message | bytes, flag: int = 0) -> bytes:
    payload = message if isinstance(message, bytes) else message.SerializeToString()
    return struct.pack(">BI", flag, len(payload)) + payload


class Frames:
    """Frames of a gRPC-web response body, read as they arrive."""

    def __init__(self, response: http.client.HTTPResponse, text: bool = False) -> None:
        self.response = response
        self.text = text
        self.buffer = b""

    def next(self) -> tuple[int, bytes]:
        while True:
            if len(self.buffer) >= 5:
                flag, length = struct.unpack_from(">BI", self.buffer)
                if len(self.buffer) >= 5 + length:
                    payload, self.buffer = self.buffer[5 : 5 + length], self.buffer[5 + length :]
                    return flag, payload
            data = self.response.read1(65536)
            if not data:
                raise EOFError(f"the body ended inside a frame: {self.buffer!r}")
            # The -text form: each frame is base64 on its own, so every 4 characters decode alone.
            self.buffer += _decode_base64(data) if self.text else data

    def message(self, kind: type[M]) -> M:
        flag, payload = self.next()
        assert flag == 0, f"expected a message, got the trailer {payload!r}"
        return kind.FromString(payload)

    def until_trailer(self, kind: type[M]) -> tuple[list[M], dict[str, str]]:
        messages: list[M] = []
        while True:
            flag, payload = self.next()
            if flag & 0x80:
                assert self.response.read() == b"", "nothing may follow the trailer"
                return messages, parse_trailer(payload)
            messages.append(kind.FromString(payload))


def _decode_base64(data: bytes) -> bytes:
    assert len(data) % 4 == 0, data
    return b"".join(base64.b64decode(data[i : i + 4]) for i in range(0, len(data), 4))


def parse_trailer(payload: bytes) -> dict[str, str]:
    lines = payload.decode().split("\r\n")
    assert lines[-1] == "", payload
    fields = dict(line.split(":", 1) for line in lines[:-1])
    fields["grpc-message"] = urllib.parse.unquote(fields.get("grpc-message", ""))
    return fields


def field_violations(trailer: dict[str, str]) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations in a trailer's status details (grpc-status-details-bin)."""
    status = status_pb2.Status.FromString(base64.b64decode(trailer["grpc-status-details-bin"]))
    assert (str(status.code), status.message) == (trailer["grpc-status"], trailer["grpc-message"]), status
    violations = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request), detail.type_url
        violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


def host_and_port(cluster) -> tuple[str, int]:
    url = urllib.parse.urlsplit(cluster.console_url)
    return url.hostname, url.port


def connect(cluster, timeout: float = 15) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(*host_and_port(cluster), timeout=timeout)


def post(
    cluster,
    method: str,
    body: bytes,
    api_key: str | None = None,
    content_type: str = "application/grpc-web+proto",
    headers: dict[str, str] | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> http.client.HTTPResponse:
    connection = connection or connect(cluster)
    sent = {"content-type": content_type, "x-grpc-web": "1", **(headers or {})}
    if api_key != "":
        sent["authorization"] = f"Bearer {api_key or cluster.api_key}"
    connection.request("POST", method, body=body, headers=sent)
    return connection.getresponse()


def call(cluster, method: str, request: Message, kind: type[M], **options) -> tuple[list[M], dict[str, str]]:
    """A call whose response ends: its messages and its trailer."""
    response = post(cluster, method, frame(request), **options)
    assert response.status == 200, response.read()
    assert response.getheader("content-type") == "application/grpc-web+proto"
    return Frames(response).until_trailer(kind)


def agent_pid(cluster) -> int:
    for pid, _start in descendants([cluster.server_pid]):
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"simplane.agent" in cmdline.read():
                return pid
    raise AssertionError("no local agent process")


def open_files(pid: int) -> list[str]:
    names = []
    for entry in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed while listing
            names.append(os.readlink(f"/proc/{pid}/fd/{entry}"))
    return names


# --- calls --------------------------------------------------------------------------------------------


def test_unary_calls_through_the_bridge_answer_like_native_ones(cluster) -> None:
    task = cluster.client().tasks.submit(["true"], name="bridged")
    connection = connect(cluster)  # both calls on one kept-alive connection
    listed, trailer = call(
        cluster, TASKS + "ListTasks", task_pb2.ListTasksRequest(), task_pb2.ListTasksResponse, connection=connection
    )
    assert trailer == {"grpc-status": "0", "grpc-message": ""}
    assert [t.id for t in listed[0].tasks] == [task.id]
    assert listed[0].tasks[0].name == "bridged"
    whoami, trailer = call(
        cluster,
        "/simplane.v1.AccountService/WhoAmI",
        account_pb2.WhoAmIRequest(),
        account_pb2.WhoAmIResponse,
        connection=connection,
    )
    assert trailer["grpc-status"] == "0"
    assert whoami[0].user.name == "admin"


@pytest.mark.parametrize("api_key", ["", "sp_nokey_nosecret"])
def test_calls_without_a_valid_key_are_unauthenticated(cluster, api_key) -> None:
    messages, trailer = call(
        cluster, TASKS + "ListTasks", task_pb2.ListTasksRequest(), task_pb2.ListTasksResponse, api_key=api_key
    )
    assert messages == []
    assert trailer["grpc-status"] == str(UNAUTHENTICATED), trailer


def test_errors_keep_their_status_and_message(cluster) -> None:
    _, trailer = call(
        cluster, TASKS + "GetTask", task_pb2.GetTaskRequest(task_id="t_missing"), task_pb2.GetTaskResponse
    )
    assert trailer["grpc-status"] == str(NOT_FOUND), trailer
    assert "t_missing" in trailer["grpc-message"]
    _, trailer = call(
        cluster, TASKS + "ListTasks", task_pb2.ListTasksRequest(page_size=5000), task_pb2.ListTasksResponse
    )
    assert trailer["grpc-status"] == str(INVALID_ARGUMENT), trailer
    assert trailer["grpc-message"].startswith("page_size: must be between 0 and")


def test_invalid_arguments_carry_their_field_in_the_status_details(cluster) -> None:
    submit = task_pb2.SubmitTaskRequest(command=["true", "b\0"])
    _, trailer = call(cluster, TASKS + "SubmitTask", submit, task_pb2.SubmitTaskResponse)
    assert trailer["grpc-status"] == str(INVALID_ARGUMENT), trailer
    assert field_violations(trailer) == [("command[1]", "must not contain NUL characters")]

    response = post(
        cluster,
        TASKS + "ListTasks",
        base64.b64encode(frame(task_pb2.ListTasksRequest(page_size=5000))),
        content_type="application/grpc-web-text",
    )
    _, trailer = Frames(response, text=True).until_trailer(task_pb2.ListTasksResponse)
    assert field_violations(trailer) == [("page_size", "must be between 0 and 1000, got 5000")]

    # A stream over a WebSocket: the trailer message carries them too.
    browser = WebSocketClient(cluster, TASKS + "WatchTasks")
    browser.send(f"authorization: Bearer {cluster.api_key}\r\n".encode())
    browser.send(frame(task_pb2.WatchTasksRequest(since_revision=-1)))
    flag, payload = browser.grpc_frame()
    assert flag == 0x80
    assert field_violations(parse_trailer(payload)) == [("since_revision", "must not be negative")]
    assert browser.close_code() == 1000

    # Other errors carry no details.
    _, trailer = call(
        cluster, TASKS + "GetTask", task_pb2.GetTaskRequest(task_id="t_missing"), task_pb2.GetTaskResponse
    )
    assert trailer["grpc-status"] == str(NOT_FOUND) and "grpc-status-details-bin" not in trailer, trailer


def test_the_agent_service_is_not_served(cluster) -> None:
    request = agent_pb2.DownloadInputsRequest()
    _, trailer = call(cluster, "/simplane.v1.AgentService/DownloadInputs", request, agent_pb2.DownloadInputsResponse)
    assert trailer["grpc-status"] == str(UNIMPLEMENTED), trailer


def test_bad_framing_is_an_invalid_argument(cluster) -> None:
    response = post(cluster, TASKS + "ListTasks", b"\x00\x00\x00\x00\x09abc")  # says 9 bytes, holds 3
    messages, trailer = Frames(response).until_trailer(task_pb2.ListTasksResponse)
    assert messages == []
    assert trailer["grpc-status"] == str(INVALID_ARGUMENT), trailer


def test_a_client_stream_is_sent_as_several_frames_in_one_body(cluster) -> None:
    data = b"hello from a browser\n"
    body = frame(storage_pb2.UploadFilesRequest(prefix="web/")) + frame(
        storage_pb2.UploadFilesRequest(
            chunk=storage_pb2.FileChunk(path="a.txt", data=data, sha256=hashlib.sha256(data).hexdigest())
        )
    )
    response = post(cluster, "/simplane.v1.StorageService/UploadFiles", body)
    messages, trailer = Frames(response).until_trailer(storage_pb2.UploadFilesResponse)
    assert trailer["grpc-status"] == "0", trailer
    assert (messages[0].files, messages[0].bytes) == (1, len(data))
    assert [f.path for f in cluster.client().storage.list("web/")] == ["web/a.txt"]


def test_the_text_form_is_base64_both_ways(cluster) -> None:
    response = post(
        cluster,
        "/simplane.v1.AccountService/WhoAmI",
        base64.b64encode(frame(account_pb2.WhoAmIRequest())),
        content_type="application/grpc-web-text",
    )
    assert response.getheader("content-type") == "application/grpc-web-text+proto"
    messages, trailer = Frames(response, text=True).until_trailer(account_pb2.WhoAmIResponse)
    assert trailer["grpc-status"] == "0"
    assert messages[0].user.name == "admin"


# --- streams ------------------------------------------------------------------------------------------


def test_watch_streams_the_snapshot_then_each_change(cluster) -> None:
    client = cluster.client()
    earlier = client.tasks.submit(["true"])
    earlier.wait(timeout=30)
    response = post(cluster, TASKS + "WatchTasks", frame(task_pb2.WatchTasksRequest()))
    assert response.status == 200
    assert response.getheader("transfer-encoding") == "chunked"
    frames = Frames(response)
    snapshot = []
    while (event := frames.message(task_pb2.WatchTasksResponse)).type != task_pb2.WATCH_EVENT_TYPE_SNAPSHOT_END:
        snapshot.append(event.task.id)
    assert snapshot == [earlier.id]
    task = client.tasks.submit(["true"])
    while True:  # heartbeats may come in between
        event = frames.message(task_pb2.WatchTasksResponse)
        if event.type == task_pb2.WATCH_EVENT_TYPE_CHANGE and event.task.id == task.id:
            break
    response.close()


def test_grpc_timeout_is_the_calls_deadline(cluster) -> None:
    task = cluster.client().tasks.submit(["sleep", "60"])
    request = task_pb2.TailLogsRequest(task_id=task.id, follow=True)
    response = post(cluster, TASKS + "TailLogs", frame(request), headers={"grpc-timeout": "1S"})
    _, trailer = Frames(response).until_trailer(task_pb2.TailLogsResponse)
    assert trailer["grpc-status"] == str(DEADLINE_EXCEEDED), trailer


def test_closing_the_connection_cancels_the_stream(cluster_factory) -> None:
    """Observed through the agent: it holds the tailed file open exactly as long as the followed tail lasts.

    Heartbeats are slowed down so that no write to the closed socket can end the stream instead.
    """
    cluster = cluster_factory(env={"SIMPLANE_HEARTBEAT_INTERVAL": "60"})
    client = cluster.client()
    task = client.tasks.submit(["sh", "-c", "echo started > progress.txt; exec sleep 60"])
    eventually(lambda: task.status == "RUNNING", timeout=30)
    request = task_pb2.TailLogsRequest(
        task_id=task.id, cursors=[task_pb2.LogCursor(stream=task_pb2.LOG_STREAM_FILE)], file="progress.txt", follow=True
    )
    body = frame(request)
    host, port = host_and_port(cluster)
    browser = socket.create_connection((host, port), timeout=15)
    browser.sendall(
        f"POST {TASKS}TailLogs HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/grpc-web+proto\r\n"
        f"authorization: Bearer {cluster.api_key}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while b"started" not in received:
        received += browser.recv(65536)
    agent = agent_pid(cluster)

    def tailed_file_open() -> bool:
        return any(name.endswith("/progress.txt") for name in open_files(agent))

    assert tailed_file_open()
    browser.close()
    eventually(lambda: not tailed_file_open(), timeout=5)
    messages, trailer = call(
        cluster, TASKS + "GetTask", task_pb2.GetTaskRequest(task_id=task.id), task_pb2.GetTaskResponse
    )
    assert trailer["grpc-status"] == "0" and messages[0].task.status == task_pb2.TASK_STATUS_RUNNING


# --- streams over WebSockets (how the console streams: browsers count them apart from HTTP connections) ----


class WebSocketClient:
    """The client end of a WebSocket to the bridge, framed by hand as RFC 6455 says (client frames are masked)."""

    def __init__(self, cluster, path: str, headers: dict[str, str] | None = None) -> None:
        host, port = host_and_port(cluster)
        self.socket = socket.create_connection((host, port), timeout=15)
        self.key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self.socket.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
        )
        self.buffer = b""
        head = self._until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.decode().partition(":") for line in head.split(b"\r\n")[1:] if line)
        }

    def _until(self, end: bytes) -> bytes:
        while end not in self.buffer:
            data = self.socket.recv(65536)
            assert data, f"the connection closed: {self.buffer!r}"
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(end)
        return head

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            data = self.socket.recv(65536)
            assert data, f"the connection closed: {self.buffer!r}"
            self.buffer += data
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, payload: bytes, opcode: int = 0x2, announced: int | None = None) -> None:
        """One masked frame; `announced` claims another length (and then no payload is sent)."""
        length = len(payload) if announced is None else announced
        head = (
            struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, length)
            if length > 125
            else bytes([0x80 | opcode, 0x80 | length])
        )
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload)) if announced is None else b""
        self.socket.sendall(head + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        """The next frame from the server: its opcode and payload (server frames are unmasked)."""
        first, second = self._exactly(2)
        assert first & 0x80 and not second & 0x80, (first, second)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._exactly(8))
        return first & 0x0F, self._exactly(length)

    def grpc_frame(self) -> tuple[int, bytes]:
        """The gRPC-web frame carried by the next binary message."""
        opcode, payload = self.receive()
        assert opcode == 0x2, (opcode, payload)
        flag, length = struct.unpack_from(">BI", payload)
        assert len(payload) == 5 + length, "one frame per message"
        return flag, payload[5:]

    def close_code(self) -> int:
        """The code of the server's close frame, after any messages still on their way."""
        while (message := self.receive())[0] == 0x2:
            pass
        opcode, payload = message
        assert opcode == 0x8, message
        return struct.unpack(">H", payload[:2])[0]


def test_a_stream_over_a_websocket_sends_each_frame_as_a_message(cluster) -> None:
    client = cluster.client()
    earlier = client.tasks.submit(["true"])
    earlier.wait(timeout=30)
    browser = WebSocketClient(cluster, TASKS + "WatchTasks")
    assert browser.status == 101
    expected = hashlib.sha1((browser.key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    assert browser.headers["sec-websocket-accept"] == base64.b64encode(expected).decode()
    browser.send(f"authorization: Bearer {cluster.api_key}\r\n".encode())
    browser.send(frame(task_pb2.WatchTasksRequest()))
    snapshot = []
    while True:
        _, payload = browser.grpc_frame()
        event = task_pb2.WatchTasksResponse.FromString(payload)
        if event.type == task_pb2.WATCH_EVENT_TYPE_SNAPSHOT_END:
            break
        snapshot.append(event.task.id)
    assert snapshot == [earlier.id]
    browser.send(b"are you there?", opcode=0x9)
    task = client.tasks.submit(["true"])
    pong = False
    while True:  # the pong and heartbeats may come in between
        opcode, payload = browser.receive()
        pong = pong or (opcode == 0xA and payload == b"are you there?")
        if opcode == 0x2 and task_pb2.WatchTasksResponse.FromString(payload[5:]).task.id == task.id:
            break
    assert pong
    browser.send(struct.pack(">H", 1000), opcode=0x8)
    assert browser.close_code() == 1000


def test_a_websocket_without_a_key_is_unauthenticated_before_its_request_is_read(cluster) -> None:
    browser = WebSocketClient(cluster, TASKS + "TailLogs")
    browser.send(b"")  # headers, without authorization; the request message never comes
    flag, payload = browser.grpc_frame()
    assert flag == 0x80
    assert parse_trailer(payload)["grpc-status"] == str(UNAUTHENTICATED)
    assert browser.close_code() == 1000


def test_a_websocket_request_over_the_limit_is_resource_exhausted_unread(cluster) -> None:
    browser = WebSocketClient(cluster, TASKS + "WatchTasks")
    browser.send(f"authorization: Bearer {cluster.api_key}\r\n".encode())
    browser.send(b"", announced=grpc_web.MAX_REQUEST_BYTES + 1)
    flag, payload = browser.grpc_frame()
    assert flag == 0x80
    assert parse_trailer(payload)["grpc-status"] == str(RESOURCE_EXHAUSTED)
    assert browser.close_code() == 1009


def test_websockets_from_pages_of_other_origins_are_refused(cluster) -> None:
    browser = WebSocketClient(cluster, TASKS + "WatchTasks", headers={"Origin": "http://evil.example"})
    assert browser.status == 403


# --- CORS ---------------------------------------------------------------------------------------------


def test_pages_of_other_origins_are_refused(cluster) -> None:
    response = post(
        cluster, TASKS + "ListTasks", frame(task_pb2.ListTasksRequest()), headers={"origin": "http://evil.example"}
    )
    assert response.status == 403
    assert response.getheader("access-control-allow-origin") is None
    connection = connect(cluster)
    connection.request(
        "OPTIONS",
        TASKS + "ListTasks",
        headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
    )
    assert connection.getresponse().status == 403


def test_the_consoles_own_origin_may_call(cluster) -> None:
    host, port = host_and_port(cluster)
    _, trailer = call(
        cluster,
        TASKS + "ListTasks",
        task_pb2.ListTasksRequest(),
        task_pb2.ListTasksResponse,
        headers={"origin": f"http://{host}:{port}"},
    )
    assert trailer["grpc-status"] == "0"


def test_listed_origins_may_call(cluster_factory) -> None:
    cluster = cluster_factory(env={"SIMPLANE_CORS_ORIGINS": "https://dash.example.org http://127.0.0.1:5173"})
    origin = "https://dash.example.org"
    connection = connect(cluster)
    connection.request(
        "OPTIONS",
        TASKS + "WatchTasks",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,x-grpc-web",
        },
    )
    preflight = connection.getresponse()
    preflight.read()
    assert preflight.status == 204
    assert preflight.getheader("access-control-allow-origin") == origin
    assert "POST" in preflight.getheader("access-control-allow-methods", "")
    allowed = {h.strip() for h in preflight.getheader("access-control-allow-headers", "").split(",")}
    assert {"authorization", "content-type", "x-grpc-web", "grpc-timeout"} <= allowed
    response = post(
        cluster,
        TASKS + "ListTasks",
        frame(task_pb2.ListTasksRequest()),
        headers={"origin": origin},
        connection=connection,
    )
    assert response.getheader("access-control-allow-origin") == origin
    assert "grpc-status" in response.getheader("access-control-expose-headers", "")
    assert "Origin" in response.getheader("vary", "")
    _, trailer = Frames(response).until_trailer(task_pb2.ListTasksResponse)
    assert trailer["grpc-status"] == "0"


def test_without_auth_only_loopback_host_names_are_served(cluster_factory) -> None:
    """A page on any site could point its own name at 127.0.0.1 (DNS rebinding); without auth, that is refused."""
    cluster = cluster_factory(env={"SIMPLANE_DISABLE_AUTH": "1"})
    _, port = host_and_port(cluster)
    request = frame(account_pb2.WhoAmIRequest())
    rebound = post(
        cluster,
        "/simplane.v1.AccountService/WhoAmI",
        request,
        api_key="",
        headers={"host": f"rebound.example:{port}", "origin": f"http://rebound.example:{port}"},
    )
    assert rebound.status == 403
    response = post(cluster, "/simplane.v1.AccountService/WhoAmI", request, api_key="")
    messages, trailer = Frames(response).until_trailer(account_pb2.WhoAmIResponse)
    assert trailer["grpc-status"] == "0"
    assert messages[0].user.admin


def test_a_malformed_cors_origin_stops_up(tmp_path) -> None:
    env = {**base_env(), "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data")}
    command = [*CLI, "up", "--address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--agents", "0"]
    done = subprocess.run(
        [*command, "--cors-origin", "dash.example.org/app"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    assert not READY_LINE.search(done.stdout)
    assert done.stderr.strip().splitlines() == [
        "error: --cors-origin must be SCHEME://HOST[:PORT] with scheme http or https, got 'dash.example.org/app'"
    ]


# --- the console's files ------------------------------------------------------------------------------


def get(cluster, path: str, headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    connection = connect(cluster)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def test_the_root_is_the_console_with_its_security_headers(cluster) -> None:
    response, body = get(cluster, "/")
    assert response.status == 200
    assert body == (BUNDLE / "index.html").read_bytes()
    assert response.getheader("content-type") == "text/html; charset=utf-8"
    assert response.getheader("cache-control") == "no-cache"
    policy = response.getheader("content-security-policy", "")
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.getheader("x-content-type-options") == "nosniff"
    assert response.getheader("referrer-policy") == "no-referrer"
    again, _ = get(cluster, "/", {"if-none-match": response.getheader("etag", "")})
    assert again.status == 304


def test_client_routes_are_the_console_and_missing_assets_are_not(cluster) -> None:
    response, body = get(cluster, "/tasks/t_abc")
    assert response.status == 200 and body == (BUNDLE / "index.html").read_bytes()
    response, _ = get(cluster, "/assets/missing-0123abcd.js")
    assert response.status == 404
    response, _ = get(cluster, TASKS + "ListTasks")
    assert response.status == 405


def test_files_are_gzipped_for_clients_that_take_it(cluster) -> None:
    response, body = get(cluster, "/", {"accept-encoding": "gzip, deflate, br"})
    assert response.getheader("content-encoding") == "gzip"
    assert "Accept-Encoding" in response.getheader("vary", "")
    assert gzip.decompress(body) == (BUNDLE / "index.html").read_bytes()


def test_hashed_assets_are_cached_for_good(cluster) -> None:
    assets = sorted((BUNDLE / "assets").glob("*.js")) if (BUNDLE / "assets").is_dir() else []
    if not assets:
        pytest.skip("the console bundle has no assets/ yet (placeholder index.html)")
    response, body = get(cluster, f"/assets/{assets[0].name}")
    assert response.status == 200 and body == assets[0].read_bytes()
    assert response.getheader("content-type") == "text/javascript; charset=utf-8"
    assert "immutable" in response.getheader("cache-control", "")


# --- admission: the key and the size are checked before a body is read ---------------------------------


def raw_post(cluster, method: str, length: int, api_key: str = "") -> socket.socket:
    """A socket that sent a POST's head announcing `length` body bytes, and none of them yet."""
    host, port = host_and_port(cluster)
    browser = socket.create_connection((host, port), timeout=15)
    key = f"authorization: Bearer {api_key}\r\n" if api_key else ""
    browser.sendall(
        f"POST {method} HTTP/1.1\r\nHost: {host}:{port}\r\ncontent-type: application/grpc-web+proto\r\n"
        f"{key}content-length: {length}\r\n\r\n".encode()
    )
    return browser


def read_to_end(browser: socket.socket) -> bytes:
    answer = b""
    while data := browser.recv(65536):
        answer += data
    return answer


def trailer_only(answer: bytes) -> dict[str, str]:
    """The trailer of a gRPC-web answer made of its head and one trailer frame, which closed the connection."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"Connection: close" in head, head
    flag, length = struct.unpack_from(">BI", body)
    assert flag == 0x80 and len(body) == 5 + length, body
    return parse_trailer(body[5:])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def test_large_posts_without_a_key_are_unauthenticated_unread_and_cost_no_memory(cluster) -> None:
    """Eight 60 MB posts at once, each streamed until the answer comes: UNAUTHENTICATED at once, no body held."""
    size, chunk = 60 * 1024 * 1024, b"\0" * 65536
    before = rss_kib(cluster.server_pid)
    answers: list[tuple[int, bytes]] = []

    def post_without_key() -> None:
        with raw_post(cluster, TASKS + "SubmitTask", size) as browser:
            sent = 0
            while sent < size:
                readable, writable, _ = select.select([browser], [browser], [], 15)
                if readable:
                    break  # answered before the body was sent: stop sending, as a browser does
                if writable:
                    with contextlib.suppress(BlockingIOError):
                        sent += browser.send(chunk, socket.MSG_DONTWAIT)
            answers.append((sent, read_to_end(browser)))

    posters = [threading.Thread(target=post_without_key, daemon=True) for _ in range(8)]
    deadline = time.monotonic() + 30
    for poster in posters:
        poster.start()
    peak = before
    for poster in posters:
        while poster.is_alive():
            assert time.monotonic() < deadline, "the posts were not answered within 30 s"
            poster.join(timeout=0.05)
            peak = max(peak, rss_kib(cluster.server_pid))
            assert peak - before < 100 * 1024, f"the server grew from {before} KiB to {peak} KiB"
    assert len(answers) == 8
    for sent, answer in answers:
        assert sent < size // 2, f"the answer came only after {sent} bytes of the body"
        trailer = trailer_only(answer)
        assert trailer["grpc-status"] == str(UNAUTHENTICATED), trailer
        assert "missing API key" in trailer["grpc-message"]


@pytest.mark.parametrize(
    ("method", "length", "limit"),
    [
        (TASKS + "SubmitTask", 5 * 1024 * 1024, str(grpc_web.MAX_REQUEST_BYTES)),
        ("/simplane.v1.StorageService/UploadFile", 64 << 20, str(grpc_web.MAX_UPLOAD_REQUEST_BYTES)),
    ],
)
def test_a_body_over_the_methods_limit_is_resource_exhausted_unread(cluster, method, length, limit) -> None:
    with raw_post(cluster, method, length, api_key=cluster.api_key) as browser:
        trailer = trailer_only(read_to_end(browser))
    assert trailer["grpc-status"] == str(RESOURCE_EXHAUSTED), trailer
    assert f"the request body is {length} bytes" in trailer["grpc-message"]
    assert f"at most {limit}" in trailer["grpc-message"]


def test_a_body_within_the_upload_limit_is_read_and_stored(cluster) -> None:
    data = os.urandom(8 * 1024 * 1024)
    request = storage_pb2.UploadFileRequest(
        prefix="web/", chunk=storage_pb2.FileChunk(path="big.bin", data=data, sha256=hashlib.sha256(data).hexdigest())
    )
    response = post(cluster, "/simplane.v1.StorageService/UploadFile", frame(request))
    messages, trailer = Frames(response).until_trailer(storage_pb2.UploadFileResponse)
    assert trailer["grpc-status"] == "0", trailer
    assert messages[0].file.size == len(data)
