"""The fake Compute Engine (tests/fake_gce.py) as the real google-cloud-compute client sees it: REST calls,
operations, list filters and pages, errors as `google.api_core.exceptions`, and instances that boot a startup
script on a machine of their own, read their metadata server and get preempted."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fake_gce import FakeGce
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1
from waiting import eventually

ZONE = "us-central1-a"
DONE = compute_v1.Operation.Status.DONE


@dataclass
class Compute:
    """The real clients, pointed at the fake."""

    project: str
    instances: compute_v1.InstancesClient
    operations: compute_v1.ZoneOperationsClient
    machine_types: compute_v1.MachineTypesClient

    def insert(
        self,
        name: str,
        *,
        zone: str = ZONE,
        machine_type: str = "e2-standard-2",
        labels: dict[str, str] | None = None,
        metadata: dict[str, str] | None = None,
        scheduling: compute_v1.Scheduling | None = None,
        request_id: str | None = None,
    ) -> compute_v1.Operation:
        instance = compute_v1.Instance(
            name=name,
            machine_type=f"zones/{zone}/machineTypes/{machine_type}",
            labels=labels or {},
            metadata=compute_v1.Metadata(
                items=[compute_v1.Items(key=key, value=value) for key, value in (metadata or {}).items()]
            ),
            scheduling=scheduling,
        )
        request = compute_v1.InsertInstanceRequest(project=self.project, zone=zone, instance_resource=instance)
        if request_id is not None:
            request.request_id = request_id
        return self.instances.insert_unary(request=request)

    def wait(self, operation: compute_v1.Operation, zone: str = ZONE, timeout: float = 30) -> compute_v1.Operation:
        """The operation once DONE, through operations.wait (insert().result() would poll the real Google)."""
        deadline = time.monotonic() + timeout
        while operation.status != DONE:
            assert time.monotonic() < deadline, f"not DONE within {timeout} s: {operation}"
            operation = self.operations.wait(project=self.project, zone=zone, operation=operation.name, timeout=timeout)
        return operation

    def get(self, name: str, zone: str = ZONE) -> compute_v1.Instance:
        return self.instances.get(project=self.project, zone=zone, instance=name)

    def delete(self, name: str, zone: str = ZONE) -> compute_v1.Operation:
        return self.wait(self.instances.delete_unary(project=self.project, zone=zone, instance=name), zone)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGce]:
    with FakeGce(tmp_path / "gce") as fake:
        yield fake


def clients(fake: FakeGce) -> Compute:
    options = {"api_endpoint": fake.endpoint}
    credentials = AnonymousCredentials()
    return Compute(
        fake.project,
        compute_v1.InstancesClient(credentials=credentials, transport="rest", client_options=options),
        compute_v1.ZoneOperationsClient(credentials=credentials, transport="rest", client_options=options),
        compute_v1.MachineTypesClient(credentials=credentials, transport="rest", client_options=options),
    )


@pytest.fixture
def compute(fake: FakeGce) -> Compute:
    return clients(fake)


def python_script(body: str) -> str:
    """A startup script run by this test's Python, with `metadata(path, header=True)` to read the metadata server."""
    return (
        f"#!{sys.executable}\n"
        "import json, os, signal, subprocess, sys, time, urllib.error, urllib.request\n"
        "def metadata(path, header=True):\n"
        "    url = 'http://' + os.environ['GCE_METADATA_HOST'] + '/computeMetadata/v1/' + path\n"
        "    request = urllib.request.Request(url, headers={'Metadata-Flavor': 'Google'} if header else {})\n"
        "    try:\n"
        "        with urllib.request.urlopen(request) as response:\n"
        "            return response.read().decode(), response.headers['ETag']\n"
        "    except urllib.error.HTTPError as error:\n"
        "        return f'HTTP {error.code}', None\n"
        "def report(line):\n"
        "    with open('report', 'a') as file:\n"
        "        file.write(line + '\\n')\n" + body
    )


def report(fake: FakeGce, name: str) -> list[str]:
    """The lines a startup script reported so far: whole lines only, since the script may be writing one."""
    path = fake.instance(name).directory / "report"
    return path.read_text().split("\n")[:-1] if path.exists() else []


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


METADATA_PATHS = [
    "instance/attributes/greeting",
    "instance/attributes/",
    "instance/attributes/missing",
    "instance/name",
    "instance/id",
    "instance/zone",
    "instance/machine-type",
    "instance/hostname",
    "instance/preempted",
    "project/project-id",
    "project/numeric-project-id",
]


def test_an_instance_boots_and_its_startup_script_reads_the_metadata_server(fake: FakeGce, compute: Compute) -> None:
    script = python_script(
        f"values = {{path: metadata(path)[0] for path in {METADATA_PATHS!r}}}\n"
        "values['no header'] = metadata('instance/name', header=False)[0]\n"
        "values['unchanged'] = metadata('instance/preempted?wait_for_change=true&timeout_sec=1')[0]\n"
        "values['attributes'] = json.loads(metadata('instance/attributes/?recursive=true')[0])\n"
        "values['directories'] = [os.getcwd(), os.environ['HOME']]\n"
        # google-auth finds the metadata server through GCE_METADATA_HOST, as an agent on a VM would.
        "from google.auth.compute_engine import _metadata\n"
        "from google.auth.transport.requests import Request\n"
        "values['google-auth'] = [_metadata.ping(Request()), _metadata.get(Request(), 'instance/attributes/greeting')]\n"
        "report(json.dumps(values))\n"
    )
    labels = {"group": "cfd", "server": "s-1"}
    operation = compute.insert("vm-1", labels=labels, metadata={"startup-script": script, "greeting": "hello vm"})
    assert operation.operation_type == "insert" and operation.status != DONE

    done = compute.wait(operation)
    assert done.error.errors == []
    instance = compute.get("vm-1")
    assert (instance.status, dict(instance.labels)) == ("RUNNING", labels)
    assert instance.machine_type.endswith(f"/zones/{ZONE}/machineTypes/e2-standard-2")
    assert {item.key: item.value for item in instance.metadata.items}["greeting"] == "hello vm"
    assert fake.instance("vm-1").status_history == ["PROVISIONING", "STAGING", "RUNNING"]
    directory = fake.instance("vm-1").directory
    values = json.loads(eventually(lambda: report(fake, "vm-1"), timeout=30)[0])
    assert values == {
        "instance/attributes/greeting": "hello vm",
        "instance/attributes/": "startup-script\ngreeting\n",
        "instance/attributes/missing": "HTTP 404",
        "instance/name": "vm-1",
        "instance/id": str(instance.id),
        "instance/zone": f"projects/{fake.project_number}/zones/{ZONE}",
        "instance/machine-type": f"projects/{fake.project_number}/machineTypes/e2-standard-2",
        "instance/hostname": f"vm-1.{ZONE}.c.{fake.project}.internal",
        "instance/preempted": "FALSE",
        "project/project-id": fake.project,
        "project/numeric-project-id": str(fake.project_number),
        "no header": "HTTP 403",
        "unchanged": "FALSE",  # a wait for a change ends at its timeout with the value as it is
        "attributes": {"startup-script": script, "greeting": "hello vm"},
        "directories": [str(directory), str(directory / "home")],
        "google-auth": [True, "hello vm"],
    }

    def serial_port_output() -> str:
        return compute.instances.get_serial_port_output(project=fake.project, zone=ZONE, instance="vm-1").contents

    eventually(lambda: "startup-script exit status 0\n" in serial_port_output(), timeout=10)


def test_list_filters_by_label_and_pages(fake: FakeGce, compute: Compute) -> None:
    groups = {"b-1": "b", "a-3": "a", "a-1": "a", "b-2": "b", "a-2": "a"}
    operations = [compute.insert(name, labels={"group": group}) for name, group in groups.items()]
    for operation in operations:
        compute.wait(operation)

    def pages(filter: str, max_results: int = 500) -> list[list[str]]:
        request = compute_v1.ListInstancesRequest(
            project=fake.project, zone=ZONE, filter=filter, max_results=max_results
        )
        return [[instance.name for instance in page.items] for page in compute.instances.list(request=request).pages]

    assert pages('labels.group = "a"', max_results=2) == [["a-1", "a-2"], ["a-3"]]
    assert pages("labels.group = b") == [["b-1", "b-2"]]
    assert pages('labels.group != "a" AND status = RUNNING') == [["b-1", "b-2"]]
    assert pages('(labels.group = "a") (name = "a-2") OR name = b-1') == [["a-2", "b-1"]]
    assert pages("labels.group:*", max_results=4) == [["a-1", "a-2", "a-3", "b-1"], ["b-2"]]
    assert pages("name eq 'a-[12]'") == [["a-1", "a-2"]]
    assert pages('labels.group = "c"') == [[]]
    assert pages('labels.other = "a"') == [[]]
    with pytest.raises(exceptions.BadRequest, match="Invalid list filter expression"):
        pages("labels.group = ")


def test_delete_stops_every_process_of_the_machine(fake: FakeGce, compute: Compute) -> None:
    script = python_script(
        # A process in a session of its own, as an agent's task is, left behind by a script that ends.
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
        "report(str(child.pid))\n"
    )
    compute.wait(compute.insert("vm-1", metadata={"startup-script": script}))
    pid = int(eventually(lambda: report(fake, "vm-1"), timeout=30)[0])
    record = fake.instance("vm-1")
    machine = record.machine
    assert machine is not None
    assert running(pid) and os.getsid(pid) not in (os.getsid(machine.pid), os.getsid(0))

    operation = compute.delete("vm-1")
    assert (operation.operation_type, operation.error.errors) == ("delete", [])
    assert not running(pid)
    assert machine.poll() is not None
    with pytest.raises(exceptions.NotFound, match="instances/vm-1' was not found"):
        compute.get("vm-1")
    assert record.status_history == ["PROVISIONING", "STAGING", "RUNNING", "STOPPING", "TERMINATED"]


def test_preemption_warns_then_kills_and_deletes_a_spot_instance(fake: FakeGce, compute: Compute) -> None:
    fake.preemption_grace = 3
    script = python_script(
        "signal.signal(signal.SIGTERM, lambda number, frame: report('SIGTERM'))\n"
        "value, etag = metadata('instance/preempted')\n"
        "report('watching ' + value)\n"
        "report('preempted ' + metadata('instance/preempted?wait_for_change=true&last_etag=' + etag)[0])\n"
        "while True:\n"
        "    time.sleep(1)\n"  # SIGTERM is ignored: only the SIGKILL after the grace ends it
    )
    spot = compute_v1.Scheduling(provisioning_model="SPOT", instance_termination_action="DELETE")
    compute.wait(compute.insert("spot-1", metadata={"startup-script": script}, scheduling=spot))
    assert eventually(lambda: report(fake, "spot-1") == ["watching FALSE"], timeout=30)
    record = fake.instance("spot-1")
    machine = record.machine
    assert machine is not None

    preempted_at = time.monotonic()
    fake.preempt("spot-1")
    eventually(lambda: len(report(fake, "spot-1")) == 3, timeout=10)
    lines = report(fake, "spot-1")
    assert sorted(lines[1:]) == ["SIGTERM", "preempted TRUE"]
    assert compute.get("spot-1").status == "STOPPING"

    def gone() -> bool:
        try:
            compute.get("spot-1")
        except exceptions.NotFound:
            return True
        return False

    eventually(gone, timeout=30)
    assert time.monotonic() - preempted_at >= fake.preemption_grace
    assert machine.poll() is not None
    assert record.status_history[-3:] == ["RUNNING", "STOPPING", "TERMINATED"]
    listed = compute.operations.list(
        request=compute_v1.ListZoneOperationsRequest(
            project=fake.project, zone=ZONE, filter='operationType = "compute.instances.preempted"'
        )
    )
    assert [operation.target_link.rsplit("/", 1)[1] for operation in listed] == ["spot-1"]


def test_a_preempted_spot_instance_that_stops_stays_terminated(fake: FakeGce, compute: Compute) -> None:
    script = python_script("report('up')\ntime.sleep(300)\n")  # SIGTERM ends it at once
    compute.wait(
        compute.insert(
            "spot-1", metadata={"startup-script": script}, scheduling=compute_v1.Scheduling(provisioning_model="SPOT")
        )
    )
    compute.wait(compute.insert("standard-1"))
    eventually(lambda: report(fake, "spot-1") == ["up"], timeout=30)
    with pytest.raises(ValueError, match="not a running spot instance"):
        fake.preempt("standard-1")

    fake.preempt("spot-1")  # the default grace is GCE's 30 s: ending sooner means the fake saw every process exit
    eventually(lambda: compute.get("spot-1").status == "TERMINATED", timeout=10)
    assert compute.get("spot-1").scheduling.instance_termination_action == "STOP"
    assert compute.get("standard-1").status == "RUNNING"


def test_api_errors_arrive_as_google_api_core_exceptions(fake: FakeGce, compute: Compute) -> None:
    with pytest.raises(exceptions.NotFound) as not_found:
        compute.get("nope")
    assert f"The resource 'projects/{fake.project}/zones/{ZONE}/instances/nope' was not found" in str(not_found.value)

    first = compute.insert("vm-1", request_id="4a0f7c1e-0000-4000-8000-000000000001")
    retried = compute.insert("vm-1", request_id="4a0f7c1e-0000-4000-8000-000000000001")
    assert retried.name == first.name  # a retry with the same request id is the same operation, not a conflict
    with pytest.raises(exceptions.Conflict, match="instances/vm-1' already exists"):
        compute.insert("vm-1")
    with pytest.raises(exceptions.BadRequest, match="Machine type with name 'n2-standard-2' does not exist in zone"):
        compute.insert("vm-2", machine_type="n2-standard-2")
    with pytest.raises(exceptions.BadRequest, match="'c2d-standard-8' does not exist in zone 'europe-west1-b'"):
        compute.insert("vm-2", zone="europe-west1-b", machine_type="c2d-standard-8")
    with pytest.raises(
        exceptions.BadRequest, match=r"Invalid value for field 'zone': 'mars-north1-a'\. Unknown zone\."
    ):
        compute.insert("vm-2", zone="mars-north1-a")
    with pytest.raises(exceptions.BadRequest, match="violates format constraints"):
        compute.insert("vm-2", labels={"group": "Upper.Case"})
    with pytest.raises(exceptions.NotFound, match="operations/operation-0' was not found"):
        compute.operations.get(project=fake.project, zone=ZONE, operation="operation-0")

    fake.cpu_quota = 4  # vm-1 holds 2 CPUs
    with pytest.raises(exceptions.Forbidden) as quota:
        compute.insert("vm-2", machine_type="e2-standard-4")
    assert "Quota 'CPUS' exceeded.  Limit: 4.0 in region us-central1." in str(quota.value)
    assert quota.value.reason == "QUOTA_EXCEEDED"
    compute.wait(compute.insert("vm-2", machine_type="e2-standard-2"))  # within the quota

    fake.cpu_quota = None
    fake.exhausted_zones.add(ZONE)
    failed = compute.wait(compute.insert("vm-3"))
    assert [(error.code, error.message) for error in failed.error.errors] == [
        (
            "ZONE_RESOURCE_POOL_EXHAUSTED",
            f"The zone 'projects/{fake.project}/zones/{ZONE}' does not have enough resources available to fulfill "
            "the request.  Try a different zone, or try again later.",
        )
    ]
    assert failed.http_error_status_code == 503
    with pytest.raises(exceptions.NotFound):
        compute.get("vm-3")
    inserts = [
        path for method, path in fake.requests if method == "POST" and urlsplit(path).path.endswith("/instances")
    ]
    assert len(inserts) == 10  # the fake records every call, refused ones too


def test_operations_wait_answers_at_its_limit_while_not_done(fake: FakeGce, compute: Compute) -> None:
    fake.state_seconds = 0.5
    fake.operation_wait_limit = 0.1
    operation = compute.insert("vm-1")
    waited = compute.operations.wait(project=fake.project, zone=ZONE, operation=operation.name)
    assert waited.status == compute_v1.Operation.Status.RUNNING
    assert compute.wait(waited).status == DONE


def test_machine_types(fake: FakeGce, compute: Compute) -> None:
    machine_type = compute.machine_types.get(project=fake.project, zone=ZONE, machine_type="c2d-standard-16")
    assert (machine_type.guest_cpus, machine_type.memory_mb) == (16, 65536)
    listed = compute.machine_types.list(project=fake.project, zone=ZONE)
    assert [(t.name, t.guest_cpus, t.memory_mb) for t in listed] == [
        ("c2d-standard-16", 16, 65536),
        ("c2d-standard-8", 8, 32768),
        ("e2-standard-2", 2, 8192),
        ("e2-standard-4", 4, 16384),
    ]
    assert [t.name for t in compute.machine_types.list(project=fake.project, zone="europe-west1-b")] == [
        "e2-standard-2",
        "e2-standard-4",
    ]
    with pytest.raises(exceptions.NotFound, match="machineTypes/c2d-standard-8' was not found"):
        compute.machine_types.get(project=fake.project, zone="europe-west1-b", machine_type="c2d-standard-8")


def test_close_leaves_no_process_behind(tmp_path: Path) -> None:
    fake = FakeGce(tmp_path / "gce").start()
    try:
        compute = clients(fake)
        script = python_script(
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
            "report(str(child.pid))\n"
        )
        compute.wait(compute.insert("vm-1", metadata={"startup-script": script}))
        pid = int(eventually(lambda: report(fake, "vm-1"), timeout=30)[0])
        serial_log = fake.instance("vm-1").serial_log
        eventually(lambda: "startup-script exit status 0\n" in serial_log.read_text(), timeout=10)
        machine = fake.instance("vm-1").machine
        assert machine is not None and running(pid)  # the script is gone, the process it left runs on
    finally:
        fake.close()
    assert machine.poll() is not None
    assert not running(pid)
