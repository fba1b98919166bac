"""ControllerService: a thin gRPC adapter over the Fleet core.

Request-level problems are status codes with one-line details: NOT_FOUND for unknown nodes,
processes and configs, INVALID_ARGUMENT for configs that do not parse or selectors that mean
no node, UNAVAILABLE when etcd cannot be reached, FAILED_PRECONDITION (with the leader's
address in the "fleetvisor-leader" trailing metadata) for a write sent to a follower.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NoReturn, TypeVar

import aetcd
import grpc

from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc

from . import audit, fanout
from .configs import ConfigRejected
from .fleet import Fleet, NotFound, revision_message
from .operations import ENDED, Fenced, Operations
from .leadership import Leadership
from .livestate import rpc_reason
from .records import Selector

log = logging.getLogger("fleetvisor.controller")
T = TypeVar("T")
LEADER_METADATA = "fleetvisor-leader"
STATUS_PERIOD = 1.0   # WatchStatus resends at least this often (uptimes, heartbeat ages)
STATUS_COALESCE = 0.2  # and at most this often


def peer_host(context: grpc.aio.ServicerContext) -> str:
    """The caller's IP from "ipv4:10.0.0.5:41234" or "ipv6:[::1]:41234"."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]")


def caller(context: grpc.aio.ServicerContext) -> str:
    """The certificate's common name under mutual TLS; otherwise what fleetctl says, marked so."""
    names = context.auth_context().get("x509_common_name")
    if names:
        return names[0].decode()
    claimed = dict(context.invocation_metadata() or ()).get("fleetvisor-user", "")
    return f"{claimed or 'unknown'} (unverified)"


ERRORS = (NotFound, ConfigRejected, Fenced, aetcd.exceptions.ClientError)


async def fail(context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
    """The core's exceptions as status codes with one-line details."""
    if isinstance(exc, NotFound):
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, ConfigRejected):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, Fenced):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{exc}; try again")
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"etcd is unavailable: {exc or type(exc).__name__}")
    raise AssertionError("abort returns only by raising")


class ControllerServicer(pb_grpc.ControllerServiceServicer):
    def __init__(self, fleet: Fleet, leadership: Leadership, operations: Operations, *, node_ttl: float,
                 command_timeout: float) -> None:
        self.fleet = fleet
        self.leadership = leadership
        self.operations = operations
        self.node_ttl = node_ttl
        self.command_timeout = command_timeout

    async def _write(self, context: grpc.aio.ServicerContext, action: str, args: dict[str, object],
                     work: Callable[[], Awaitable[T]], summary: Callable[[T], str],
                     succeeded: Callable[[T], bool] = lambda _: True) -> T:
        """A mutating command: only on the leader, always audited."""
        if not self.leadership.is_leader:
            address = self.leadership.leader_address
            if address:
                context.set_trailing_metadata(((LEADER_METADATA, address),))
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"this controller is not the leader; the leader is at {address}" if address
                                else "no controller leads right now; try again in a few seconds")
        who = caller(context)
        try:
            result = await work()
        except ERRORS as exc:
            await audit.record(self.fleet.client, self.fleet.prefix,
                               audit.entry(who, action, args, False, str(exc), self.fleet.id))
            await fail(context, exc)
        await audit.record(self.fleet.client, self.fleet.prefix,
                           audit.entry(who, action, args, succeeded(result), summary(result), self.fleet.id))
        return result

    # -- agents ------------------------------------------------------------------------------

    async def Heartbeat(self, request: pb.HeartbeatRequest, context) -> pb.HeartbeatResponse:
        if not request.node:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a heartbeat must name its node")
        if not request.address:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"node {request.node} has no gRPC address: set grpc_listen in [fleetvisor]")
        try:
            await self.fleet.heartbeat(request, peer_host(context))
        except ERRORS as exc:
            await fail(context, exc)
        return pb.HeartbeatResponse(interval_seconds=self.node_ttl / 3, ttl_seconds=self.node_ttl,
                                    controller_id=self.fleet.id)

    # -- reads -------------------------------------------------------------------------------

    async def _status(self, request: pb.StatusRequest, context) -> pb.FleetStatus:
        try:
            return self.fleet.status(list(request.patterns), dict(request.labels))
        except ERRORS as exc:
            await fail(context, exc)

    async def GetStatus(self, request: pb.StatusRequest, context) -> pb.FleetStatus:
        return await self._status(request, context)

    async def WatchStatus(self, request: pb.StatusRequest, context) -> AsyncIterator[pb.FleetStatus]:
        while True:
            seen = self.fleet.changes
            yield await self._status(request, context)
            await asyncio.sleep(STATUS_COALESCE)
            await self.fleet.wait_change(STATUS_PERIOD - STATUS_COALESCE, since=seen)

    async def ListNodes(self, request: pb.ListNodesRequest, context) -> pb.ListNodesResponse:
        return pb.ListNodesResponse(nodes=self.fleet.nodes(dict(request.labels)))

    async def GetLeader(self, request, context) -> pb.LeaderInfo:
        return pb.LeaderInfo(leader_id=self.leadership.leader_id, leader_address=self.leadership.leader_address,
                             controller_id=self.fleet.id, is_leader=self.leadership.is_leader)

    async def ListConfigs(self, request, context) -> pb.ListConfigsResponse:
        members = self.fleet.members()
        summaries = []
        for name, current in sorted(self.fleet.current_configs().items()):
            history, _ = self.fleet.history(name)
            summaries.append(pb.ConfigSummary(
                name=name, current_revision=current.revision,
                assignment=pb.Assignment(nodes=list(current.selector.nodes), labels=current.selector.labels),
                target_nodes=[n for n, m in members.items() if current.selector.matches(m)],
                updated_at=history[current.revision].created_at))
        return pb.ListConfigsResponse(configs=summaries)

    async def ConfigHistory(self, request: pb.ConfigHistoryRequest, context) -> pb.ConfigHistoryResponse:
        try:
            history, current = self.fleet.history(request.name)
        except ERRORS as exc:
            await fail(context, exc)
        return pb.ConfigHistoryResponse(
            revisions=[revision_message(request.name, n, rev, text=False) for n, rev in history.items()],
            current_revision=current)

    async def GetConfigRevision(self, request: pb.GetConfigRevisionRequest, context) -> pb.ConfigRevision:
        try:
            number, rev = self.fleet.revision(request.name, request.revision)
        except ERRORS as exc:
            await fail(context, exc)
        return revision_message(request.name, number, rev, text=True)

    async def ConfigStatus(self, request, context) -> pb.ConfigStatusResponse:
        return pb.ConfigStatusResponse(nodes=self.fleet.config_status())

    async def ListAudit(self, request: pb.ListAuditRequest, context) -> pb.ListAuditResponse:
        entries = audit.listing(self.fleet.mirror, request.since, request.limit)
        return pb.ListAuditResponse(entries=[pb.AuditEntry(
            time=e.time, who=e.who, action=e.action, detail=e.detail, ok=e.ok, result=e.result,
            controller_id=e.controller_id) for e in entries])

    async def TailLog(self, request: pb.FleetTailRequest, context) -> AsyncIterator:
        link = self.fleet.links.get(request.node)
        if request.node not in self.fleet.members() or link is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no such node: {request.node}")
        try:
            async for chunk in link.stub.TailLog(request.request, timeout=None if request.request.follow
                                                 else self.command_timeout):
                yield chunk
        except grpc.aio.AioRpcError as exc:
            code = exc.code() if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                                                grpc.StatusCode.INVALID_ARGUMENT) else grpc.StatusCode.UNAVAILABLE
            await context.abort(code, f"{request.node}: {rpc_reason(exc)}")

    # -- writes ------------------------------------------------------------------------------

    async def PushConfig(self, request: pb.PushConfigRequest, context) -> pb.PushConfigResponse:
        selector = Selector(tuple(request.assignment.nodes), dict(request.assignment.labels))
        args = {"name": request.name, "nodes": list(selector.nodes), "labels": selector.labels,
                "message": request.message, "rolling": request.HasField("rollout")}
        who = caller(context)
        planner = (self.operations.rollout_planner(request.rollout, request.name, who, request.message)
                   if request.HasField("rollout") else None)
        return await self._write(context, "config.push", args,
                                 lambda: self._stored(request.name, self.fleet.push(
                                     request.name, request.config_text, selector, request.message, who,
                                     rollout=planner)),
                                 _pushed_summary)

    async def RollbackConfig(self, request: pb.RollbackConfigRequest, context) -> pb.PushConfigResponse:
        args = {"name": request.name, "to": request.to_revision, "message": request.message}
        return await self._write(context, "config.rollback", args,
                                 lambda: self._stored(request.name, self.fleet.rollback(request.name, request.to_revision,
                                                                          request.message, caller(context))),
                                 _pushed_summary)

    async def _stored(self, name: str, push: Awaitable[tuple[int, list[str], bool, str]]) -> pb.PushConfigResponse:
        number, targets, unchanged, op_id = await push
        _, rev = self.fleet.revision(name, number)
        return pb.PushConfigResponse(revision=revision_message(name, number, rev, text=False),
                                     target_nodes=targets, unchanged=unchanged, operation_id=op_id)

    async def Control(self, request: pb.ControlRequest, context) -> pb.ControlResponse:
        action = pb.ControlAction.Name(request.action).lower() if request.action else "unspecified"
        args = {"patterns": list(request.patterns), "labels": dict(request.labels), "signal": request.signal}
        return await self._write(context, f"control.{action}", args,
                                 lambda: fanout.control(self.fleet, request, default_timeout=self.command_timeout),
                                 _control_summary, lambda response: all(n.ok for n in response.nodes))


    # -- operations ------------------------------------------------------------------------------

    async def StartOperation(self, request: pb.StartOperationRequest, context) -> pb.Operation:
        if request.spec.kind not in (pb.OPERATION_KIND_UNSPECIFIED, pb.ROLLING_RESTART):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "config rollouts start with a rolling config push")
        spec = pb.OperationSpec()
        spec.CopyFrom(request.spec)
        spec.kind = pb.ROLLING_RESTART
        try:
            planned = self.operations.plan_restart(spec, caller(context), request.message)
        except ERRORS as exc:
            await fail(context, exc)
        if request.dry_run:
            planned.id = ""
            return planned
        args = {"group": spec.group, "nodes": list(spec.selector.nodes), "labels": dict(spec.selector.labels),
                "batch": spec.batch, "max_unavailable": spec.max_unavailable, "message": request.message}
        return await self._write(context, "ops.rolling-restart", args, lambda: self.operations.create(planned),
                                 lambda op: f"operation {op.id}: {len(op.batches)} batches")

    async def ListOperations(self, request: pb.ListOperationsRequest, context) -> pb.ListOperationsResponse:
        return pb.ListOperationsResponse(operations=self.operations.list(request.all))

    async def _operation(self, op_id: str, context) -> pb.Operation:
        try:
            return self.operations.get(op_id)
        except ERRORS as exc:
            await fail(context, exc)

    async def GetOperation(self, request: pb.GetOperationRequest, context) -> pb.Operation:
        return await self._operation(request.id, context)

    async def WatchOperation(self, request: pb.GetOperationRequest, context) -> AsyncIterator[pb.Operation]:
        last = None
        while True:
            seen = self.fleet.changes
            op = await self._operation(request.id, context)
            if op != last:
                yield op
                last = op
            if op.state in ENDED:
                return
            await self.fleet.wait_change(STATUS_PERIOD, since=seen)

    async def PauseOperation(self, request: pb.GetOperationRequest, context) -> pb.Operation:
        return await self._write(context, "ops.pause", {"id": request.id, "reason": request.reason},
                                 lambda: self.operations.pause(request.id, request.reason), _op_summary)

    async def ResumeOperation(self, request: pb.GetOperationRequest, context) -> pb.Operation:
        return await self._write(context, "ops.resume", {"id": request.id},
                                 lambda: self.operations.resume(request.id), _op_summary)

    async def AbortOperation(self, request: pb.GetOperationRequest, context) -> pb.Operation:
        return await self._write(context, "ops.abort", {"id": request.id, "reason": request.reason},
                                 lambda: self.operations.abort(request.id, request.reason), _op_summary)


def _op_summary(op: pb.Operation) -> str:
    return f"operation {op.id} is {pb.OperationState.Name(op.state)[3:].lower()}"

def _pushed_summary(response: pb.PushConfigResponse) -> str:
    rev = response.revision
    if response.unchanged:
        return f"{rev.name} unchanged at revision {rev.revision}"
    rolling = f", rolled out by operation {response.operation_id}" if response.operation_id else ""
    return f"{rev.name} revision {rev.revision} for {', '.join(response.target_nodes) or 'no node yet'}{rolling}"


def _control_summary(response: pb.ControlResponse) -> str:
    failed = [n.node for n in response.nodes if not n.ok]
    return (f"{len(response.nodes) - len(failed)} of {len(response.nodes)} nodes ok"
            + (f"; failed: {', '.join(failed)}" if failed else ""))
