"""The dashboard's calls of ControllerService, as xmlrpc_api is the XML-RPC face's: the servicer's
own methods, so the same guard rule (verb), scope checks, leader and etcd rules and audit apply.

A call is admitted as the guard admits an RPC (Gate.permit: the rule table, the policies),
refusals go to the same audit hook, then the servicer method runs with the caller set for its
task and a small stand-in for the gRPC context, whose `abort` raises CallFailed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from fleetvisor.agent.security import guard
from fleetvisor.agent.security.guard import Gate, Refused
from fleetvisor.agent.security.identity import Identity
from fleetvisor.agent.security.rules import CONTROLLER_SERVICE
from fleetvisor.v1 import controller_pb2 as pb

from ..service import LEADER_METADATA, ControllerServicer
from ..views import FleetStatus

VIA = "dashboard"  # how the audit log names this face, after the identity
HTTP_STATUS = {grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
               grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
               grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.ABORTED: 409,
               grpc.StatusCode.UNAVAILABLE: 503}


class CallFailed(Exception):
    """The servicer's (or the guard's) answer to a refused or failed call, in one line."""

    def __init__(self, code: grpc.StatusCode, details: str, leader: str = "") -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.leader = leader

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


@dataclass
class Context:
    """What the servicer reads of a grpc.aio.ServicerContext."""

    host: str
    via: str = VIA
    trailing: Sequence[tuple[str, str]] = field(default_factory=tuple)

    def peer(self) -> str:
        return f"ipv6:[{self.host}]:0" if ":" in self.host else f"ipv4:{self.host}:0"

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.trailing = metadata

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        leader = next((v for k, v in self.trailing if k == LEADER_METADATA), "")
        raise CallFailed(code, details, leader)


def to_json(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


@dataclass
class Calls:
    servicer: ControllerServicer
    gate: Gate

    async def admit(self, who: Identity, method: str) -> None:
        """The guard's check of `method` for `who`; a refusal is audited as the guard's are."""
        full = f"/{CONTROLLER_SERVICE}/{method}"
        try:
            self.gate.permit(self.gate.vet(who), full)
        except Refused as exc:
            if self.gate.on_refusal is not None:
                await self.gate.on_refusal(who, f"{full} ({VIA})", str(exc))
            raise CallFailed(exc.code, str(exc)) from None
        guard.serve_as(who)

    async def call(self, who: Identity, host: str, method: str, request: Message) -> Message:
        await self.admit(who, method)
        result: Message = await getattr(self.servicer, method)(request, Context(host))
        return result

    async def status(self, who: Identity, host: str,
                     request: pb.StatusRequest) -> tuple[FleetStatus, pb.FleetSummary]:
        """GetStatus's rows and summary from one look (the status stream's tick), admitted as GetStatus."""
        await self.admit(who, "GetStatus")
        return await self.servicer.status_and_summary(request, Context(host))

    async def stream(self, who: Identity, host: str, method: str, request: Message) -> AsyncIterator[Message]:
        await self.admit(who, method)
        async for item in getattr(self.servicer, method)(request, Context(host)):
            yield item
