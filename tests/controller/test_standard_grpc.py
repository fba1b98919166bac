"""The standard gRPC services (issue 17): grpc.health.v1.Health and server reflection on the
agent and the controller, called with plain gRPC clients (no fleetvisor stubs)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support import wait_for

from .fleet_harness import states, wait_status

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=5).status


def services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                              timeout=5)
        return {s.name for s in answer.list_services_response.service}


def symbol_files(address: str, symbol: str) -> list[bytes]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)]), timeout=5)
        return list(answer.file_descriptor_response.file_descriptor_proto)


STANDARD = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def test_the_agent_serves_health_and_reflection(fleet):
    ctl = fleet.controller()
    agent = fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: "web-1:app" in states(s), what="web-1 up")
    assert check(agent.address, "") == SERVING
    assert check(agent.address, "fleetvisor.v1.AgentService") == SERVING
    with pytest.raises(grpc.RpcError) as unknown:
        check(agent.address, "no.such.Service")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert services(agent.address) == {"fleetvisor.v1.AgentService", *STANDARD}
    files = symbol_files(agent.address, "fleetvisor.v1.AgentService")
    assert files and b"ListProcesses" in b"".join(files)

    with grpc.insecure_channel(agent.address) as channel:  # Watch: the status now, then its changes
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == SERVING
        agent.stop()  # a shutdown says NOT_SERVING before the server goes
        assert next(watch).status == NOT_SERVING
        watch.cancel()


def test_the_controller_reports_reads_and_leadership_apart(fleet, etcd):
    first = fleet.controller()
    wait_for(first.is_leader, 15, "ctl-1 leads")
    second = fleet.controller()
    second.wait_line("serving on")
    for ctl, leads in ((first, SERVING), (second, NOT_SERVING)):
        assert check(ctl.address, "") == SERVING
        assert check(ctl.address, "fleetvisor.v1.ControllerService") == SERVING
        assert check(ctl.address, "fleetvisor.v1.Leader") == leads
    assert services(second.address) == {"fleetvisor.v1.ControllerService", *STANDARD}
    with grpc.insecure_channel(second.address) as channel:
        listed = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=5)
    assert {name: s.status for name, s in listed.statuses.items()} == {
        "": SERVING, "fleetvisor.v1.ControllerService": SERVING, "fleetvisor.v1.Leader": NOT_SERVING}

    first.stop()
    wait_for(lambda: check(second.address, "fleetvisor.v1.Leader") == SERVING, 30, "ctl-2 leads and says so")
    etcd.kill()
    wait_for(lambda: check(second.address, "") == NOT_SERVING, 30, "reads not current without etcd")
    assert check(second.address, "fleetvisor.v1.Leader") == NOT_SERVING
    etcd.start()
    wait_for(lambda: check(second.address, "") == SERVING, 30, "etcd back")


def test_a_malformed_reflection_request_is_refused_cleanly(fleet):
    ctl = fleet.controller()
    with grpc.insecure_channel(ctl.address) as channel:
        call = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                     request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as refused:
            list(call(iter([b"\x0a\x03\xff\xfe\xfd"]), timeout=5))  # field 1 (string) not UTF-8
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in refused.value.details()
    assert check(ctl.address, "") == SERVING  # and it still serves
