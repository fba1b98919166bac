"""The standard gRPC services every fleetvisor server offers beside its own, so that generic
tools work against it: grpc.health.v1.Health (load balancers, Kubernetes gRPC probes,
grpc-health-probe) and server reflection (grpcurl, grpcui, Postman list and call the API
without the .proto files).

They pass the same guard as the rest of the server: under mutual TLS a probe needs a client
certificate of the fleet's CA (a viewer's will do); nothing answers unauthenticated off loopback.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class _Servicer(HealthServicer):
    """grpcio-health-checking's servicer, with the List the protocol gained (every name and its
    status), which its asyncio version lacks."""

    async def List(self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext,
                   ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status) for name, status in self._server_status.items()})


class Health:
    """The health service of one server: `report` sets the status of each name at once."""

    def __init__(self, server: grpc.aio.Server, services: list[str]) -> None:
        self.servicer = _Servicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        reflection.enable_server_reflection([*services, HEALTH_SERVICE, reflection.SERVICE_NAME], server)
        self._wanted: dict[str, int] = {}
        self._setting: asyncio.Task[None] | None = None

    def report(self, statuses: dict[str, int]) -> None:
        """Callable from plain callbacks on the loop: the servicer's setter is a coroutine, and
        one task applies the latest statuses in order."""
        self._wanted.update(statuses)
        if self._setting is None or self._setting.done():
            self._setting = asyncio.get_running_loop().create_task(self._apply())

    async def _apply(self) -> None:
        while self._wanted:
            service, status = self._wanted.popitem()
            await self.servicer.set(service, status)

    async def close(self) -> None:
        """Every name NOT_SERVING for good: a server going down tells its watchers first."""
        await self.servicer.enter_graceful_shutdown()
