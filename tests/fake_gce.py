"""A local fake of Compute Engine, for driving the real google-cloud-compute client in tests (docs/testing.md).

`FakeGce` serves the Compute v1 REST paths a provider uses (instances insert, get, list, delete and serial port
output; zone operations get, wait and list; machine types get and list) on 127.0.0.1, with Compute's JSON and
Google's error bodies, and keeps instances, operations and labels in memory. An inserted instance goes
PROVISIONING, STAGING, RUNNING; once RUNNING it runs its `startup-script` metadata item on a machine of its own
(tests/fake_gce_machine.py: a process that adopts everything the script starts) in a directory of its own, with
`GCE_METADATA_HOST` pointing at the instance's own metadata server. Deleting it, preempting it (a spot instance)
or closing the fake kills every process of that machine.

    with FakeGce(tmp_path) as fake:
        client = compute_v1.InstancesClient(credentials=AnonymousCredentials(), transport="rest",
                                            client_options={"api_endpoint": fake.endpoint})

The test steers what the API cannot: `cpu_quota` (inserts beyond it get 403 QUOTA_EXCEEDED), `exhausted_zones`
(inserts there end in a ZONE_RESOURCE_POOL_EXHAUSTED operation error), `preempt(name)`, and the pace
(`state_seconds`, `preemption_grace`, `operation_wait_limit`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import fake_gce_filter
from cluster import alive, base_env, descendants

# Self links name the real API, as GCE's do: they identify resources, the client never calls them.
COMPUTE_URL = "https://www.googleapis.com/compute/v1"
MACHINE_PROGRAM = Path(__file__).with_name("fake_gce_machine.py")
MACHINE_STOP_TIMEOUT = 15.0
SERVE_POLL_INTERVAL = 0.02  # how soon a server notices its shutdown (socketserver's default: 0.5 s)


@dataclass(frozen=True)
class MachineType:
    cpus: int
    memory_mb: int


MACHINE_TYPES = {
    "e2-standard-2": MachineType(2, 8192),
    "e2-standard-4": MachineType(4, 16384),
    "c2d-standard-8": MachineType(8, 32768),
    "c2d-standard-16": MachineType(16, 65536),
}
# The zones and the machine types each offers: the fake's own table, not GCE's (one zone lacks the c2d types so
# that a test can ask for a type its zone does not have).
ZONES = {
    "us-central1-a": tuple(MACHINE_TYPES),
    "europe-west1-b": ("e2-standard-2", "e2-standard-4"),
}
NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
METADATA_KEY = re.compile(r"[a-zA-Z0-9_-]{1,128}")
MACHINE_TYPE_URL = re.compile(r"(?:.*/)?zones/(?P<zone>[^/]+)/machineTypes/(?P<name>[^/]+)")
METADATA_VALUE_LIMIT = 256 * 1024
METADATA_TOTAL_LIMIT = 512 * 1024
MAX_RESULTS = 500


class ApiError(Exception):
    """An answer other than 200, with Google's JSON error body; `google.api_core.exceptions` reads it."""

    def __init__(
        self, status: int, reason: str, message: str, *, domain: str = "global", details: tuple[dict, ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
                **({"details": list(details)} if details else {}),
            }
        }


def not_found(resource: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{resource}' was not found")


def invalid(field_name: str, value: object, problem: str) -> ApiError:
    return ApiError(400, "invalid", f"Invalid value for field '{field_name}': '{value}'. {problem}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _new_id() -> int:
    return random.getrandbits(63)


def _fingerprint(value: object) -> str:
    return base64.b64encode(hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()[:8]).decode()


@dataclass
class Operation:
    """A zone operation; `error` holds Compute's `{"errors": [{"code", "message"}]}` when it failed."""

    zone: str
    operation_type: str
    target: str
    target_id: int
    name: str = field(default_factory=lambda: f"operation-{int(time.time() * 1000)}-{random.getrandbits(48):012x}")
    id: int = field(default_factory=_new_id)
    status: str = "PENDING"
    insert_time: str = field(default_factory=_now)
    start_time: str | None = None
    end_time: str | None = None
    error: dict | None = None
    http_error: tuple[int, str] | None = None
    status_message: str | None = None

    def start(self) -> None:
        self.status, self.start_time = "RUNNING", _now()

    def finish(self, error_code: str | None = None, message: str = "", http_error: tuple[int, str] | None = None):
        self.status, self.end_time = "DONE", _now()
        self.start_time = self.start_time or self.end_time
        if error_code is not None:
            self.error = {"errors": [{"code": error_code, "message": message}]}
            self.http_error = http_error

    def resource(self, project: str) -> dict[str, Any]:
        zone_url = f"{COMPUTE_URL}/projects/{project}/zones/{self.zone}"
        resource: dict[str, Any] = {
            "kind": "compute#operation",
            "id": str(self.id),
            "name": self.name,
            "zone": zone_url,
            "operationType": self.operation_type,
            "targetLink": f"{zone_url}/instances/{self.target}",
            "targetId": str(self.target_id),
            "status": self.status,
            "user": "anonymous",
            "progress": 100 if self.status == "DONE" else 0,
            "insertTime": self.insert_time,
            "selfLink": f"{zone_url}/operations/{self.name}",
        }
        optional = {
            "startTime": self.start_time,
            "endTime": self.end_time,
            "error": self.error,
            "statusMessage": self.status_message,
            "httpErrorStatusCode": self.http_error and self.http_error[0],
            "httpErrorMessage": self.http_error and self.http_error[1],
        }
        return resource | {key: value for key, value in optional.items() if value is not None}


@dataclass
class Instance:
    """An instance as the fake keeps it; tests read it through `FakeGce.instance` (read only)."""

    name: str
    zone: str
    machine_type: str
    request: dict[str, Any]  # the inserted resource, echoed back with the fields GCE fills in
    labels: dict[str, str]
    metadata: dict[str, str]
    scheduling: dict[str, Any]
    directory: Path
    id: int = field(default_factory=_new_id)
    created: str = field(default_factory=_now)
    status: str = "PROVISIONING"
    status_history: list[str] = field(default_factory=lambda: ["PROVISIONING"])
    preempted: bool = False
    machine: subprocess.Popen[bytes] | None = None
    metadata_server: MetadataServer | None = None
    started: str | None = None
    powering_off: threading.Lock = field(default_factory=threading.Lock)  # a delete and close() may meet

    @property
    def spot(self) -> bool:
        return self.scheduling.get("provisioningModel") == "SPOT" or self.scheduling.get("preemptible") is True

    @property
    def serial_log(self) -> Path:
        """The machine's console: its init's and its startup script's output."""
        return self.directory / "serial.log"

    def set_status(self, status: str) -> None:
        self.status = status
        self.status_history.append(status)

    def resource(self, project: str) -> dict[str, Any]:
        zone_url = f"{COMPUTE_URL}/projects/{project}/zones/{self.zone}"
        items = [{"key": key, "value": value} for key, value in self.metadata.items()]
        resource = self.request | {
            "kind": "compute#instance",
            "id": str(self.id),
            "creationTimestamp": self.created,
            "name": self.name,
            "machineType": f"{zone_url}/machineTypes/{self.machine_type}",
            "status": self.status,
            "zone": zone_url,
            "labels": self.labels,
            "labelFingerprint": _fingerprint(self.labels),
            "metadata": {"kind": "compute#metadata", "fingerprint": _fingerprint(items), "items": items},
            "scheduling": self.scheduling,
            "selfLink": f"{zone_url}/instances/{self.name}",
        }
        if self.started is not None:
            resource["lastStartTimestamp"] = self.started
        return resource


class FakeGce:
    """The fake Compute API on 127.0.0.1 port 0, with the instances' machines under `directory`."""

    def __init__(self, directory: Path, *, project: str = "simplane-test") -> None:
        self.directory = directory
        self.project = project
        self.project_number = 123456789012
        self.state_seconds = 0.1  # how long an instance stays in each state it passes through
        self.preemption_grace = 30.0  # from the preemption notice to the hard stop, as GCE gives a spot VM
        self.operation_wait_limit = 120.0  # operations.wait answers by then even if not DONE, as GCE's does
        self.cpu_quota: int | None = None
        self.exhausted_zones: set[str] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path and query) of every API call, in order
        self._lock = threading.Condition()
        self._instances: dict[tuple[str, str], Instance] = {}
        self._operations: dict[tuple[str, str], Operation] = {}
        self._request_ids: dict[str, Operation] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._server = _Server(("127.0.0.1", 0), _ComputeHandler, self, None)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, args=(SERVE_POLL_INTERVAL,), name="fake-gce", daemon=True
        )

    def __enter__(self) -> FakeGce:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> FakeGce:
        self._server_thread.start()
        return self

    @property
    def endpoint(self) -> str:
        """The client's `api_endpoint`; the `http://` matters, or the client speaks HTTPS."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        """Stop every machine (no process is left behind), then the API."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            instances = list(self._instances.values())
        for instance in instances:
            self._stop_machine(instance)
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=MACHINE_STOP_TIMEOUT)

    # --- what a test does that the API cannot ----------------------------------------------------------------

    def instance(self, name: str, zone: str | None = None) -> Instance:
        """The live instance (read only): its status history, machine, directory and metadata server."""
        with self._lock:
            found = [i for (z, n), i in self._instances.items() if n == name and zone in (None, z)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} instances named {name!r} in zone {zone or 'any'}")
        return found[0]

    def preempt(self, name: str, zone: str | None = None) -> None:
        """Preempt a running spot instance as GCE does: `instance/preempted` turns TRUE and every process of its
        machine gets SIGTERM now, SIGKILL after `preemption_grace`; the instance is then TERMINATED, and gone
        if its `instanceTerminationAction` is DELETE. Returns once SIGTERM is sent."""
        instance = self.instance(name, zone)
        with self._lock:
            if not instance.spot or instance.status != "RUNNING":
                raise ValueError(f"{name} is not a running spot instance ({instance.status}, {instance.scheduling})")
            instance.preempted = True
            instance.set_status("STOPPING")
            operation = Operation(instance.zone, "compute.instances.preempted", instance.name, instance.id)
            operation.status_message = "Instance was preempted."
            operation.finish()
            self._operations[(instance.zone, operation.name)] = operation
            self._lock.notify_all()
        if instance.machine is not None:
            self._signal_machine(instance.machine, signal.SIGTERM)
        self._in_background(self._end_preemption, instance)

    # --- the API ---------------------------------------------------------------------------------------------

    def insert_instance(self, zone: str, body: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            if query.get("requestId") in self._request_ids:
                return self._request_ids[query["requestId"]].resource(self.project)
            instance = self._new_instance(zone, body)
            self._check_quota(instance)
            self._instances[(zone, instance.name)] = instance
            operation = self._add_operation(Operation(zone, "insert", instance.name, instance.id), query)
        self._in_background(self._boot, instance, operation)
        return operation.resource(self.project)

    def get_instance(self, zone: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self._existing(zone, name).resource(self.project)

    def list_instances(self, zone: str, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            resources = [i.resource(self.project) for (z, _), i in self._instances.items() if z == zone]
        return self._page("compute#instanceList", f"projects/{self.project}/zones/{zone}/instances", resources, query)

    def delete_instance(self, zone: str, name: str, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            if query.get("requestId") in self._request_ids:
                return self._request_ids[query["requestId"]].resource(self.project)
            instance = self._existing(zone, name)
            operation = self._add_operation(Operation(zone, "delete", name, instance.id), query)
            if instance.status not in ("STOPPING", "TERMINATED"):
                instance.set_status("STOPPING")
                self._lock.notify_all()
        self._in_background(self._delete, instance, operation)
        return operation.resource(self.project)

    def serial_port_output(self, zone: str, name: str) -> dict[str, Any]:
        with self._lock:
            instance = self._existing(zone, name)
        contents = instance.serial_log.read_text(errors="replace") if instance.serial_log.exists() else ""
        return {"kind": "compute#serialPortOutput", "contents": contents, "start": "0", "next": str(len(contents))}

    def get_operation(self, zone: str, name: str) -> dict[str, Any]:
        with self._lock:
            return self._operation(zone, name).resource(self.project)

    def wait_operation(self, zone: str, name: str) -> dict[str, Any]:
        """Answers when the operation is DONE, or after `operation_wait_limit` seconds with it still running."""
        with self._lock:
            operation = self._operation(zone, name)
            self._lock.wait_for(lambda: operation.status == "DONE" or self._closed, self.operation_wait_limit)
            return operation.resource(self.project)

    def list_operations(self, zone: str, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            resources = [o.resource(self.project) for (z, _), o in self._operations.items() if z == zone]
        return self._page("compute#operationList", f"projects/{self.project}/zones/{zone}/operations", resources, query)

    def get_machine_type(self, zone: str, name: str) -> dict[str, Any]:
        if name not in ZONES[zone]:
            raise not_found(f"projects/{self.project}/zones/{zone}/machineTypes/{name}")
        return self._machine_type(zone, name)

    def list_machine_types(self, zone: str, query: dict[str, str]) -> dict[str, Any]:
        resources = [self._machine_type(zone, name) for name in ZONES[zone]]
        return self._page(
            "compute#machineTypeList", f"projects/{self.project}/zones/{zone}/machineTypes", resources, query
        )

    # --- state (called with the lock held) -------------------------------------------------------------------

    def _existing(self, zone: str, name: str) -> Instance:
        instance = self._instances.get((zone, name))
        if instance is None:
            raise not_found(f"projects/{self.project}/zones/{zone}/instances/{name}")
        return instance

    def _operation(self, zone: str, name: str) -> Operation:
        operation = self._operations.get((zone, name))
        if operation is None:
            raise not_found(f"projects/{self.project}/zones/{zone}/operations/{name}")
        return operation

    def _add_operation(self, operation: Operation, query: dict[str, str]) -> Operation:
        self._operations[(operation.zone, operation.name)] = operation
        if "requestId" in query:
            self._request_ids[query["requestId"]] = operation
        return operation

    def _new_instance(self, zone: str, body: dict[str, Any]) -> Instance:
        """The instance a valid insert creates; an invalid one is refused as Compute refuses it (400, 409)."""
        name = body.get("name", "")
        if not NAME.fullmatch(name):
            raise invalid("resource.name", name, f"Must be a match of regex '{NAME.pattern}'")
        if (zone, name) in self._instances:
            raise ApiError(
                409,
                "alreadyExists",
                f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' already exists",
            )
        machine_type = body.get("machineType", "")
        match = MACHINE_TYPE_URL.fullmatch(machine_type)
        if match is None:
            raise invalid(
                "resource.machineType", machine_type, "Must be the URL to a Compute resource of the correct type"
            )
        if match["zone"] != zone or match["name"] not in ZONES[zone]:
            raise invalid(
                "resource.machineType",
                machine_type,
                f"Machine type with name '{match['name']}' does not exist in zone '{zone}'.",
            )
        labels = body.get("labels", {})
        for key, value in labels.items():
            if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
                raise invalid(
                    "resource.labels",
                    "",
                    f"Label '{key}': '{value}' violates format constraints: keys start with a lowercase letter; "
                    "keys and values hold lowercase letters, digits, underscores and dashes, at most 63 characters.",
                )
        metadata: dict[str, str] = {}
        for item in body.get("metadata", {}).get("items", []):
            key, value = item.get("key", ""), item.get("value", "")
            if not METADATA_KEY.fullmatch(key) or key in metadata:
                raise invalid("resource.metadata", key, "Metadata keys are unique and match [a-zA-Z0-9-_]{1,128}.")
            if len(value.encode()) > METADATA_VALUE_LIMIT:
                raise invalid("resource.metadata", key, "The value of a metadata item is at most 256 KB.")
            metadata[key] = value
        if sum(len(key) + len(value.encode()) for key, value in metadata.items()) > METADATA_TOTAL_LIMIT:
            raise invalid("resource.metadata", "", "The metadata of an instance is at most 512 KB in all.")
        scheduling = dict(body.get("scheduling", {}))
        scheduling.setdefault("provisioningModel", "STANDARD")
        if scheduling["provisioningModel"] == "SPOT":
            scheduling.setdefault("instanceTerminationAction", "STOP")
            scheduling.setdefault("automaticRestart", False)
            scheduling.setdefault("onHostMaintenance", "TERMINATE")
        request = {key: value for key, value in body.items() if key not in ("labels", "metadata", "scheduling")}
        instance_id = _new_id()
        directory = self.directory / f"{name}-{instance_id}"
        return Instance(name, zone, match["name"], request, labels, metadata, scheduling, directory, instance_id)

    def _check_quota(self, instance: Instance) -> None:
        if self.cpu_quota is None:
            return
        used = sum(MACHINE_TYPES[i.machine_type].cpus for i in self._instances.values() if i.status != "TERMINATED")
        if used + MACHINE_TYPES[instance.machine_type].cpus > self.cpu_quota:
            region = instance.zone.rsplit("-", 1)[0]
            message = f"Quota 'CPUS' exceeded.  Limit: {float(self.cpu_quota)} in region {region}."
            error_info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "QUOTA_EXCEEDED",
                "domain": "compute.googleapis.com",
                "metadata": {"quota_limit": "CPUS-per-project-region", "quota_limit_value": str(self.cpu_quota)},
            }
            raise ApiError(403, "quotaExceeded", message, domain="usageLimits", details=(error_info,))

    def _machine_type(self, zone: str, name: str) -> dict[str, Any]:
        machine_type = MACHINE_TYPES[name]
        return {
            "kind": "compute#machineType",
            "id": str(int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)),
            "name": name,
            "description": f"{machine_type.cpus} vCPUs, {machine_type.memory_mb // 1024} GB RAM",
            "guestCpus": machine_type.cpus,
            "memoryMb": machine_type.memory_mb,
            "maximumPersistentDisks": 128,
            "maximumPersistentDisksSizeGb": "263168",
            "isSharedCpu": False,
            "zone": zone,
            "selfLink": f"{COMPUTE_URL}/projects/{self.project}/zones/{zone}/machineTypes/{name}",
        }

    def _page(self, kind: str, list_id: str, resources: list[dict], query: dict[str, str]) -> dict[str, Any]:
        """Filter, order by name and cut a page; the page token names the last resource of the page before."""
        try:
            matches = fake_gce_filter.parse(query.get("filter", ""))
        except fake_gce_filter.FilterError as error:
            raise ApiError(400, "invalid", f"Invalid list filter expression: {error}") from error
        try:
            limit = int(query.get("maxResults", MAX_RESULTS)) or MAX_RESULTS
        except ValueError:
            limit = -1
        if not 0 < limit <= MAX_RESULTS:
            raise invalid("maxResults", query["maxResults"], f"Must be between 0 and {MAX_RESULTS}.")
        after = ""
        if "pageToken" in query:
            try:
                after = base64.urlsafe_b64decode(query["pageToken"].encode()).decode()
            except ValueError as error:
                raise invalid("pageToken", query["pageToken"], "Not a page token of this list.") from error
        found = sorted((r for r in resources if r["name"] > after and matches(r)), key=lambda r: r["name"])
        page: dict[str, Any] = {"kind": kind, "id": list_id, "selfLink": f"{COMPUTE_URL}/{list_id}"}
        if found[:limit]:
            page["items"] = found[:limit]
        if len(found) > limit:
            page["nextPageToken"] = base64.urlsafe_b64encode(found[limit - 1]["name"].encode()).decode()
        return page

    # --- lifecycle (background threads) ----------------------------------------------------------------------

    def _in_background(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"fake-gce-{target.__name__}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _pause(self, seconds: float) -> bool:
        """Let `seconds` pass with the lock released; False when the fake closed meanwhile."""
        return not self._lock.wait_for(lambda: self._closed, seconds)

    def _boot(self, instance: Instance, operation: Operation) -> None:
        with self._lock:
            operation.start()
            for status in ("STAGING", "RUNNING"):
                if not self._pause(self.state_seconds) or instance.status not in ("PROVISIONING", "STAGING"):
                    return  # closed, or deleted while booting: the delete finishes the operation
                if instance.zone in self.exhausted_zones:
                    del self._instances[(instance.zone, instance.name)]
                    operation.finish(
                        "ZONE_RESOURCE_POOL_EXHAUSTED",
                        f"The zone 'projects/{self.project}/zones/{instance.zone}' does not have enough resources "
                        "available to fulfill the request.  Try a different zone, or try again later.",
                        (503, "SERVICE UNAVAILABLE"),
                    )
                    self._lock.notify_all()
                    return
                instance.set_status(status)
                self._lock.notify_all()
            instance.started = _now()
            self._start_machine(instance)
            operation.finish()
            self._lock.notify_all()

    def _delete(self, instance: Instance, operation: Operation) -> None:
        with self._lock:
            operation.start()
            if not self._pause(self.state_seconds):
                return
        self._stop_machine(instance)
        with self._lock:
            instance.set_status("TERMINATED")
            self._lock.notify_all()
            if not self._pause(self.state_seconds):
                return
            self._instances.pop((instance.zone, instance.name), None)
            for pending in self._operations.values():
                if pending.target_id == instance.id and pending.status != "DONE":
                    pending.finish()  # the insert of an instance deleted while booting, or an earlier delete
            self._lock.notify_all()

    def _end_preemption(self, instance: Instance) -> None:
        deadline = time.monotonic() + self.preemption_grace
        machine = instance.machine
        while machine is not None and descendants([machine.pid]) and time.monotonic() < deadline:
            with self._lock:
                if not self._pause(0.05):
                    break
        self._stop_machine(instance)
        with self._lock:
            if instance.status == "STOPPING":
                instance.set_status("TERMINATED")
            self._lock.notify_all()
            if instance.scheduling.get("instanceTerminationAction") != "DELETE" or not self._pause(self.state_seconds):
                return
            if self._instances.get((instance.zone, instance.name)) is instance:
                del self._instances[(instance.zone, instance.name)]
            self._lock.notify_all()

    # --- machines --------------------------------------------------------------------------------------------

    def _start_machine(self, instance: Instance) -> None:
        """Run the startup script (called with the lock held, so that a delete sees the machine it must stop)."""
        home, temp = instance.directory / "home", instance.directory / "tmp"
        home.mkdir(parents=True)
        temp.mkdir()
        instance.metadata_server = MetadataServer(self, instance)
        script = instance.metadata.get("startup-script")
        if script is None:
            return
        path = instance.directory / "startup-script"
        path.write_text(script)
        path.chmod(0o755)
        command = [str(path)] if script.startswith("#!") else ["/bin/bash", str(path)]
        metadata_host = f"127.0.0.1:{instance.metadata_server.port}"
        env = {
            name: value
            for name, value in base_env().items()
            if not name.startswith(("XDG_", "GCE_METADATA_", "GOOGLE_", "CLOUDSDK_"))
        }
        # A machine of its own: its home and temporary folder, and its metadata server (google-auth reads both
        # variables; they are the same server here).
        env |= {"HOME": str(home), "TMPDIR": str(temp), "GCE_METADATA_HOST": metadata_host}
        env |= {"GCE_METADATA_IP": metadata_host}
        with instance.serial_log.open("ab") as serial:
            instance.machine = subprocess.Popen(
                [sys.executable, str(MACHINE_PROGRAM), *command],
                stdin=subprocess.PIPE,
                stdout=serial,
                stderr=subprocess.STDOUT,
                cwd=instance.directory,
                env=env,
                start_new_session=True,
            )

    def _signal_machine(self, machine: subprocess.Popen[bytes], number: signal.Signals) -> None:
        """Send a signal to every process of a machine but its init, as a VM's shutdown reaches them."""
        for process in descendants([machine.pid]):
            if alive(process):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process[0], number)

    def _stop_machine(self, instance: Instance) -> None:
        """Power off: every process of the machine dies, and its metadata server stops answering."""
        with instance.powering_off:
            machine, server = instance.machine, instance.metadata_server
            if machine is not None and machine.stdin is not None and not machine.stdin.closed:
                machine.stdin.close()  # the machine's init kills everything under it, then exits
                try:
                    machine.wait(timeout=MACHINE_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(machine.pid, signal.SIGKILL)
                    machine.wait()
                    raise RuntimeError(
                        f"the machine of {instance.name} did not stop; its output is in {instance.serial_log}"
                    ) from None
            if server is not None:
                server.close()


class MetadataServer:
    """One instance's metadata server (a port of its own, so it knows whose metadata to serve): the paths
    `computeMetadata/v1/instance/{attributes/KEY,attributes/,name,id,zone,machine-type,hostname,preempted}` and
    `project/{project-id,numeric-project-id}`, `?wait_for_change=true` (with `last_etag`, `timeout_sec`),
    `?recursive=true` on a folder, `?alt=json`. A request without `Metadata-Flavor: Google` gets 403."""

    def __init__(self, fake: FakeGce, instance: Instance) -> None:
        self.fake = fake
        self.instance = instance
        self.closed = False
        self._server = _Server(("127.0.0.1", 0), _MetadataHandler, fake, self)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever,
            args=(SERVE_POLL_INTERVAL,),
            name=f"metadata-{instance.name}",
            daemon=True,
        ).start()

    def close(self) -> None:
        with self.fake._lock:
            self.closed = True
            self.fake._lock.notify_all()  # ends the waits for a change
        self._server.shutdown()
        self._server.server_close()

    def value(self, path: str, recursive: bool) -> str | dict[str, str] | None:
        """The value at a path below computeMetadata/v1/ (called with the fake's lock held), None if there is none."""
        instance, fake = self.instance, self.fake
        if path in ("instance/attributes", "instance/attributes/"):
            return dict(instance.metadata) if recursive else "".join(f"{key}\n" for key in instance.metadata)
        if path.startswith("instance/attributes/"):
            return instance.metadata.get(path.removeprefix("instance/attributes/"))
        return {
            "instance/name": instance.name,
            "instance/id": str(instance.id),
            "instance/zone": f"projects/{fake.project_number}/zones/{instance.zone}",
            "instance/machine-type": f"projects/{fake.project_number}/machineTypes/{instance.machine_type}",
            "instance/hostname": f"{instance.name}.{instance.zone}.c.{fake.project}.internal",
            "instance/preempted": "TRUE" if instance.preempted else "FALSE",
            "project/project-id": fake.project,
            "project/numeric-project-id": str(fake.project_number),
        }.get(path)

    def wait_for_change(self, path: str, recursive: bool, last_etag: str | None, timeout: float | None) -> object:
        """The value once it differs from `last_etag`'s (or from now's), or at the timeout, or when the machine stops."""
        lock = self.fake._lock
        start = self.value(path, recursive)
        if last_etag is None or last_etag == etag(start):
            lock.wait_for(lambda: self.closed or self.value(path, recursive) != start, timeout)
        return self.value(path, recursive)


def etag(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        fake: FakeGce,
        metadata: MetadataServer | None,
    ) -> None:
        super().__init__(address, handler)
        self.fake = fake
        self.metadata = metadata


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's session reuses its connection
    disable_nagle_algorithm = True  # TCP_NODELAY, or each call waits about 40 ms for a delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `FakeGce.requests` records the calls."""

    def respond(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def query(self) -> dict[str, str]:
        return {name: values[-1] for name, values in parse_qs(urlsplit(self.path).query).items()}


ZONE_PATH = re.compile(r"/compute/v1/projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/(?P<rest>.+)")
Route = Callable[[FakeGce, str, re.Match[str], dict[str, Any], dict[str, str]], dict[str, Any]]
ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("POST", re.compile(r"instances"), lambda f, z, m, b, q: f.insert_instance(z, b, q)),
    ("GET", re.compile(r"instances"), lambda f, z, m, b, q: f.list_instances(z, q)),
    ("GET", re.compile(r"instances/([^/]+)"), lambda f, z, m, b, q: f.get_instance(z, m[1])),
    ("DELETE", re.compile(r"instances/([^/]+)"), lambda f, z, m, b, q: f.delete_instance(z, m[1], q)),
    ("GET", re.compile(r"instances/([^/]+)/serialPort"), lambda f, z, m, b, q: f.serial_port_output(z, m[1])),
    ("GET", re.compile(r"operations"), lambda f, z, m, b, q: f.list_operations(z, q)),
    ("GET", re.compile(r"operations/([^/]+)"), lambda f, z, m, b, q: f.get_operation(z, m[1])),
    ("POST", re.compile(r"operations/([^/]+)/wait"), lambda f, z, m, b, q: f.wait_operation(z, m[1])),
    ("GET", re.compile(r"machineTypes"), lambda f, z, m, b, q: f.list_machine_types(z, q)),
    ("GET", re.compile(r"machineTypes/([^/]+)"), lambda f, z, m, b, q: f.get_machine_type(z, m[1])),
]


class _ComputeHandler(_Handler):
    """Compute v1 REST: JSON in and out, errors as Google's error body."""

    def do_GET(self) -> None:
        self.handle_call()

    def do_POST(self) -> None:
        self.handle_call()

    def do_DELETE(self) -> None:
        self.handle_call()

    def handle_call(self) -> None:
        fake = self.server.fake
        path = unquote(urlsplit(self.path).path)
        fake.requests.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            status, body = 200, self.call(fake, path, json.loads(raw) if raw else {})
        except ApiError as error:
            status, body = error.status, error.body
        self.respond(status, json.dumps(body).encode(), "application/json; charset=UTF-8")

    def call(self, fake: FakeGce, path: str, body: dict[str, Any]) -> dict[str, Any]:
        match = ZONE_PATH.fullmatch(path)
        if match is None:
            raise ApiError(404, "notFound", f"fake_gce does not serve {self.command} {path}")
        if match["project"] != fake.project:
            raise not_found(f"projects/{match['project']}")
        if match["zone"] not in ZONES:
            raise invalid("zone", match["zone"], "Unknown zone.")
        for method, pattern, route in ROUTES:
            found = pattern.fullmatch(match["rest"])
            if method == self.command and found is not None:
                return route(fake, match["zone"], found, body, self.query())
        raise ApiError(404, "notFound", f"fake_gce does not serve {self.command} {path}")


class _MetadataHandler(_Handler):
    """The metadata server: text values, `Metadata-Flavor: Google` both ways."""

    def do_GET(self) -> None:
        flavor = {"Metadata-Flavor": "Google"}
        if self.headers.get("Metadata-Flavor") != "Google":
            self.respond(403, b"Missing Metadata-Flavor:Google header.", "text/html", flavor)
            return
        metadata = self.server.metadata
        assert metadata is not None
        path = urlsplit(self.path).path
        if path == "/":
            self.respond(200, b"computeMetadata/\n", "application/text", flavor)
            return
        query = self.query()
        recursive = query.get("recursive") == "true"
        name = path.removeprefix("/computeMetadata/v1/")
        with self.server.fake._lock:
            if query.get("wait_for_change") == "true":
                timeout = float(query["timeout_sec"]) if "timeout_sec" in query else None
                value = metadata.wait_for_change(name, recursive, query.get("last_etag"), timeout)
            else:
                value = metadata.value(name, recursive)
        if value is None or not path.startswith("/computeMetadata/v1/"):
            self.respond(404, b"Not Found", "text/html", flavor)
            return
        headers = flavor | {"ETag": etag(value)}
        if isinstance(value, dict) or query.get("alt") == "json":
            self.respond(200, json.dumps(value).encode(), "application/json", headers)
        else:
            self.respond(200, str(value).encode(), "application/text", headers)
