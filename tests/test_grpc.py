"""What generic tools see: gRPC health checking and reflection, and the HTTP address's health check."""

from __future__ import annotations

import urllib.request

from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def test_health_is_serving(cluster) -> None:
    health = cluster.stub(health_pb2_grpc.HealthStub)
    for service in ("", "simplane.v1.TaskService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), metadata=cluster.metadata(), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_public_services(cluster) -> None:
    reflection = cluster.stub(reflection_pb2_grpc.ServerReflectionStub)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=cluster.metadata(), timeout=10
    )
    names = {service.name for response in responses for service in response.list_services_response.service}
    assert names >= {
        "simplane.v1.TaskService",
        "simplane.v1.MachineGroupService",
        "simplane.v1.StorageService",
        "simplane.v1.AccountService",
        "grpc.health.v1.Health",
    }


def test_reflection_describes_a_task(cluster) -> None:
    reflection = cluster.stub(reflection_pb2_grpc.ServerReflectionStub)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="simplane.v1.TaskService")]),
        metadata=cluster.metadata(),
        timeout=10,
    )
    files = [response.file_descriptor_response.file_descriptor_proto for response in responses]
    assert files and files[0]


def test_the_ready_line_names_the_console_which_answers(cluster) -> None:
    assert cluster.console_url.startswith("http://127.0.0.1:")
    assert cluster.address.startswith("127.0.0.1:") and not cluster.address.endswith(":0")
    with urllib.request.urlopen(cluster.console_url.rstrip("/") + "/healthz", timeout=10) as response:
        assert response.status == 200
