"""ControllerService: a thin gRPC adapter over the Fleet core, and the one place that converts
between the core's dataclasses and the wire's messages.

The core's errors (errors.py) become status codes here and nowhere else, with one-line details:
NOT_FOUND for unknown nodes, processes, configs and operations; INVALID_ARGUMENT for configs
that do not parse, selectors that mean no node and requests an operation's state does not
allow; ABORTED when someone else changed the same thing at the same time or a rollout holds
it; FAILED_PRECONDITION (with the leader's address in the "fleetvisor-leader" trailing
metadata, when one leads) for a write sent to a controller that does not lead, and (without
it) for a request the fleet's state refuses, such as forgetting a node that is up;
UNAVAILABLE when etcd cannot be reached, naming its endpoint(s), also for a write that
reaches a controller that lost its leadership because etcd went away (saying "no controller
leads" would send the operator after the wrong thing). Every status the servicer sets
itself carries the "fleetvisor-controller" trailing metadata, so a caller can tell the
controller's answer from a failure to reach it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, TypeAlias, TypeVar, cast

import aetcd
import grpc
from google.protobuf.json_format import MessageToDict

from fleetvisor.agent.grpcapi.details import details as one_line
from fleetvisor.agent.limits import config_name_refusal, config_size_refusal, sections_refusal
from fleetvisor.agent.security import guard, wire
from fleetvisor.agent.security.identity import IdentityError, check_name
from fleetvisor.agent.security.policy import MAX_POLICY_BYTES, Authorizer, Policy, PolicyError
from fleetvisor.agent.security.rules import CONTROLLER_SERVICE
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc

from . import audit, configs, fanout, opmodel, records, summary, tailing
from .acl import Acl
from .admin import Admin, Revoked, shown
from .authorize import Checks
from .configstore import PushResult, RolloutPlanner
from .dashboard import tokens
from .errors import (
    Conflict,
    ControllerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotLeader,
    PermissionDenied,
    Unavailable,
)
from .etcd import describe
from .fleet import Fleet
from .leadership import Leadership
from .membership import Heartbeat
from .operations import Operations
from .records import RevisionRecord, RevocationRecord, Selector
from .views import FleetStatus, Freshness, NodeConfigStatus, NodeInfo, NodeProcesses
from .writegate import write_refusal

log = logging.getLogger("fleetvisor.controller")
T = TypeVar("T")
LEADER_METADATA = "fleetvisor-leader"
ANSWERED_METADATA = "fleetvisor-controller"  # on every error the servicer answers: its id
Context: TypeAlias = grpc.aio.ServicerContext
STATUS_PERIOD = 1.0   # WatchStatus resends at least this often (uptimes, heartbeat ages)
STATUS_COALESCE = 0.2  # and at most this often


@dataclass
class _Write:
    """The write this call is (every RPC runs in its own task, so a context variable is per call):
    a refusal of it at any point is audited once."""

    action: str
    args: dict[str, object] = field(default_factory=dict)
    audited: bool = False


_WRITE: contextvars.ContextVar[_Write | None] = contextvars.ContextVar("fleetvisor_write", default=None)


def _writing(action: str, args: dict[str, object]) -> _Write:
    """Say that this call is a write: from here on, `_fail` audits a refusal it was not audited for."""
    write = _WRITE.get()
    if write is None or write.action != action:
        write = _Write(action)
        _WRITE.set(write)
    write.args = args
    return write


def peer_host(context: Context) -> str:
    """The caller's IP from "ipv4:10.0.0.5:41234" or "ipv6:[::1]:41234"."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]")


def caller(context: Context) -> str:
    """Who to audit: the certificate's name under mutual TLS (with its role unless a person's);
    in plaintext, what fleetctl says, marked so."""
    who = guard.current()
    via = getattr(context, "via", "")  # another face onto this servicer (the dashboard) names itself
    if who.role in ("operator", "viewer"):
        return f"{who.name} ({via})" if via else who.name
    if who.verified:
        return f"{who.role} {who.name}"
    if via:
        return f"{who.name} ({via})"
    claimed = dict(context.invocation_metadata() or ()).get("fleetvisor-user", "")
    return f"{claimed or 'unknown'} (unverified)"


STATUS = {NotFound: grpc.StatusCode.NOT_FOUND, InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
          Conflict: grpc.StatusCode.ABORTED, NotLeader: grpc.StatusCode.FAILED_PRECONDITION,
          Unavailable: grpc.StatusCode.UNAVAILABLE, FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
          PermissionDenied: grpc.StatusCode.PERMISSION_DENIED}
ERRORS = (ControllerError, aetcd.exceptions.ClientError)


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and details for one of the core's exceptions (etcd's own: UNAVAILABLE)."""
    for kind, code in STATUS.items():
        if isinstance(exc, kind):
            return code, str(exc)
    return grpc.StatusCode.UNAVAILABLE, f"etcd is unavailable: {exc or type(exc).__name__}"


def register(server: grpc.aio.Server, servicer: ControllerServicer) -> None:
    pb_grpc.add_ControllerServiceServicer_to_server(servicer, server)


class ControllerServicer(pb_grpc.ControllerServiceServicer):
    def __init__(self, fleet: Fleet, leadership: Leadership, operations: Operations, *,
                 command_timeout: float, acl: Acl | None = None, refusals: audit.Refusals | None = None) -> None:
        self.fleet = fleet
        self.leadership = leadership
        self.operations = operations
        self.command_timeout = command_timeout
        self.acl = acl
        self.refusals = refusals
        self.tokens: tokens.Tokens | None = None  # set by main once the cluster's key is read
        self.dashboard_url = ""  # this controller's dashboard, when it serves one
        fixed = Authorizer()
        self.checks = Checks((lambda: acl.gate.authorizer) if acl is not None else (lambda: fixed))

    async def _refuse(self, context: Context, method: str, exc: PermissionDenied) -> NoReturn:
        """A scope check said no: audited like the guard's refusals, nothing done."""
        if self.refusals is not None:
            await self.refusals(guard.current(), f"/{CONTROLLER_SERVICE}/{method}", str(exc))
            if (write := _WRITE.get()) is not None:
                write.audited = True
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, one_line(str(exc)))
        raise AssertionError("abort returns only by raising")

    async def _check(self, context: Context, method: str, check: Callable[[], T]) -> T:
        """A scope check (or what it needs to know first), before any work."""
        try:
            return check()
        except PermissionDenied as exc:
            await self._refuse(context, method, exc)
        except ERRORS as exc:
            await self._fail(context, exc)

    @functools.cached_property
    def admin(self) -> Admin:
        return Admin(self.fleet.store, self.fleet.membership)

    async def _fail(self, context: Context, exc: Exception) -> NoReturn:
        """Answer with the status for `exc`; a refused write names the leader, when one leads."""
        if isinstance(exc, aetcd.exceptions.ClientError):
            exc = Unavailable(f"etcd is unavailable at {self.fleet.store.mirror.endpoints()}: {describe(exc)}")
        code, details = status_of(exc)
        write = _WRITE.get()
        if write is not None and not write.audited and not isinstance(exc, (NotLeader, Unavailable)):
            await self._audit(context, write, False, details)  # a redirect or an outage refuses nothing
        metadata = [(ANSWERED_METADATA, self.fleet.id)]
        if isinstance(exc, NotLeader) and not self.leadership.is_leader:
            address = self.leadership.leader_address
            if address:
                metadata.append((LEADER_METADATA, address))
                details = f"{details}; the leader is at {address}"
        context.set_trailing_metadata(tuple(metadata))
        await context.abort(code, one_line(details))
        raise AssertionError("abort returns only by raising")

    async def _audit(self, context: Context, write: _Write, ok: bool, result: str) -> None:
        write.audited = True
        store = self.fleet.store
        await audit.record(store.client, store.prefix,
                           audit.entry(caller(context), write.action, write.args, ok, result, self.fleet.id))

    def _etcd_down(self) -> Unavailable | None:
        """Unavailable when this controller cannot follow etcd (its watch is down): a write or
        a heartbeat cannot be recorded, and is refused at once rather than at a timeout."""
        fresh = self.fleet.views.freshness()
        if not fresh.etcd_unavailable:
            return None
        return Unavailable(fresh.reason)

    async def _core(self, context: Context, work: Callable[[], T]) -> T:
        """A read of the core, its errors as status codes."""
        try:
            return work()
        except ERRORS as exc:
            await self._fail(context, exc)

    async def _write(self, context: Context, method: str, action: str, args: dict[str, object],
                     work: Callable[[], Awaitable[T]], summary: Callable[[T], str],
                     succeeded: Callable[[T], bool] = lambda _: True) -> T:
        """A mutating command: only on the leader, always audited."""
        if refusal := write_refusal(self.fleet, self.leadership):
            await self._fail(context, refusal)
        write = _writing(action, args)
        try:
            result = await work()
        except PermissionDenied as exc:
            await self._refuse(context, method, exc)
        except ERRORS as exc:
            await self._fail(context, exc)  # audited there
        await self._audit(context, write, succeeded(result), summary(result))
        return result

    # -- agents ------------------------------------------------------------------------------

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Context) -> pb.HeartbeatResponse:
        if not request.node:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a heartbeat must name its node")
        try:
            check_name("node", request.node)
        except IdentityError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._check(context, "Heartbeat", lambda: self.checks.heartbeat(guard.current(), request.node))
        if refusal := sections_refusal(request.local_sections):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"node {request.node}: {refusal}")
        if not request.address:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"node {request.node} has no gRPC address: set grpc_listen in [fleetvisor]")
        beat = Heartbeat(node=request.node, address=request.address, labels=dict(request.labels),
                         agent_version=request.agent_version, applied_revision=request.applied_revision,
                         run_id=request.agent_run_id, started_at=request.started_at,
                         edited_by_hand=request.edited_by_hand, cluster_id=request.cluster_id,
                         local_revision=request.local_revision, local_sections=tuple(request.local_sections))
        try:
            if down := self._etcd_down():
                raise down
            interval, ttl = await self.fleet.membership.heartbeat(beat, peer_host(context), who=caller(context))
        except ERRORS as exc:
            await self._fail(context, exc)
        response = pb.HeartbeatResponse(interval_seconds=interval, ttl_seconds=ttl, controller_id=self.fleet.id)
        if self.acl is not None and request.security_revision != self.acl.state.revision:
            response.security.CopyFrom(wire.state_to_pb(self.acl.state))
        return response

    # -- reads -------------------------------------------------------------------------------

    async def _status(self, request: pb.StatusRequest, context: Context) -> pb.FleetStatus:
        states = frozenset(request.states)
        if unknown := summary.unknown_states(states):
            await self._fail(context, InvalidArgument(
                f"unknown state {', '.join(unknown)} (known: {', '.join(sorted(summary.STATES))})"))
        status = await self._seen(request, context, described=not request.summary)
        nodes = summary.select(status.nodes, states, request.problems)
        if not request.summary:
            return status_message(replace(status, nodes=nodes))
        if request.summary_above and sum(len(n.processes) for n in nodes) <= request.summary_above:
            # small enough to show whole: the rows, with RUNNING descriptions brought up to date
            status = await self._seen(request, context, described=True)
            return status_message(replace(status, nodes=summary.select(status.nodes, states, request.problems)))
        ops = await self._core(context, lambda: self._operations_seen(request, nodes))
        message = status_message(replace(status, nodes=[]))
        message.summary.CopyFrom(summary_message(summary.summarize(nodes, ops, status.now)))
        return message

    async def _seen(self, request: pb.StatusRequest, context: Context, *, described: bool) -> FleetStatus:
        """The status the request selects, cut to what the caller may read."""
        status = await self._core(context, lambda: self.fleet.views.status(
            list(request.patterns), dict(request.labels), described=described))
        who = guard.current()
        if not self.checks.sees_all(who):
            status = replace(status, nodes=[
                replace(n, processes=self.checks.visible(who, n.node.name, n.node.labels, n.processes,
                                                         lambda p: (p.group, p.name)))
                for n in status.nodes if self.checks.sees_node(who, n.node.name, n.node.labels)])
        return status

    def _operations_seen(self, request: pb.StatusRequest, nodes: list[NodeProcesses]) -> list[opmodel.Operation]:
        """The operations a summary may name: those ListOperations would show the caller, and with
        patterns or labels, those with a step on a selected node."""
        ops = self.operations.list(True)
        who = guard.current()
        if not self.checks.sees_all(who):
            members = self.fleet.membership.members()
            ops = [op for op in ops if self.checks.sees_operation(who, op.spec.group, _nodes(op), members)]
        if request.patterns or request.labels:
            chosen = [n.node.name for n in nodes]
            ops = [op for op in ops if summary.touches(op, chosen)]
        return ops

    async def GetStatus(self, request: pb.StatusRequest, context: Context) -> pb.FleetStatus:
        return await self._status(request, context)

    async def status_and_summary(self, request: pb.StatusRequest, context: Context) -> tuple[FleetStatus,
                                                                                            pb.FleetSummary]:
        """GetStatus for the dashboard's stream, one call a tick: the rows the caller may read as the
        core holds them (RUNNING descriptions as the agent sent them: the page counts uptimes) and
        the summary of those very rows. The dashboard admits it under GetStatus's rule."""
        status = await self._seen(request, context, described=False)
        ops = await self._core(context, lambda: self._operations_seen(request, status.nodes))
        return status, summary_message(summary.summarize(status.nodes, ops, status.now))

    async def WatchStatus(self, request: pb.StatusRequest, context: Context) -> AsyncIterator[pb.FleetStatus]:
        while True:
            seen = self.fleet.changes
            yield await self._status(request, context)
            await asyncio.sleep(STATUS_COALESCE)
            await self.fleet.wait_change(STATUS_PERIOD - STATUS_COALESCE, since=seen)

    async def ListNodes(self, request: pb.ListNodesRequest, context: Context) -> pb.ListNodesResponse:
        who = guard.current()
        nodes = self.fleet.views.nodes(dict(request.labels))
        if not self.checks.sees_all(who):
            nodes = [n for n in nodes if self.checks.sees_node(who, n.name, n.labels)]
        return pb.ListNodesResponse(nodes=[node_message(n) for n in nodes],
                                    stale=staleness_message(self.fleet.views.freshness()))

    async def GetLeader(self, request: pb.GetLeaderRequest, context: Context) -> pb.LeaderInfo:
        return pb.LeaderInfo(leader_id=self.leadership.leader_id, leader_address=self.leadership.leader_address,
                             controller_id=self.fleet.id, is_leader=self.leadership.is_leader,
                             asyncio_tasks=len(asyncio.all_tasks()), followed_nodes=len(self.fleet.links.followed()),
                             controllers=[pb.ControllerShare(id=s.id, address=s.address, nodes=s.nodes,
                                                             connected=s.connected, error=s.error)
                                          for s in self.fleet.shares()])

    async def ListConfigs(self, request: pb.ListConfigsRequest, context: Context) -> pb.ListConfigsResponse:
        who = guard.current()
        members = self.fleet.membership.members()
        summaries = []
        for name, current in sorted(self.fleet.configs.current_configs().items()):
            if not self.checks.sees_config(who, current.selector, members):
                continue
            history = self.fleet.configs.history(name).revisions
            summaries.append(pb.ConfigSummary(
                name=name, current_revision=current.revision, assignment=assignment_message(current.selector),
                target_nodes=[n for n, m in members.items() if current.selector.matches(m)],
                updated_at=history[current.revision].created_at))
        return pb.ListConfigsResponse(configs=summaries)

    async def ConfigHistory(self, request: pb.ConfigHistoryRequest, context: Context) -> pb.ConfigHistoryResponse:
        await self._check_config(context, "ConfigHistory", request.name)
        history = await self._core(context, lambda: self.fleet.configs.history(request.name))
        return pb.ConfigHistoryResponse(
            revisions=[revision_message(request.name, n, rev, text=False, withdrawn=history.withdrawn.get(n, ""))
                       for n, rev in history.revisions.items()],
            current_revision=history.current)

    async def GetConfigRevision(self, request: pb.GetConfigRevisionRequest, context: Context) -> pb.ConfigRevision:
        await self._check_config(context, "GetConfigRevision", request.name)
        number, rev, history = await self._core(
            context, lambda: self.fleet.configs.revision(request.name, request.revision))
        return revision_message(request.name, number, rev, text=True, withdrawn=history.withdrawn.get(number, ""))

    async def _check_config(self, context: Context, method: str, name: str) -> None:
        """Read on config `name`, before anything of it is looked up."""
        who = guard.current()
        if self.checks.sees_all(who):  # the common case: nothing of the fleet to look at
            return
        current = self.fleet.configs.current_configs().get(name)
        await self._check(context, method, lambda: self.checks.read_config(
            who, name, current.selector if current else None, self.fleet.membership.members()))

    async def ConfigStatus(self, request: pb.ConfigStatusRequest, context: Context) -> pb.ConfigStatusResponse:
        who = guard.current()
        found = self.fleet.views.config_status()
        if not self.checks.sees_all(who):
            members = self.fleet.membership.members()
            found = [s for s in found if s.node in members
                     and self.checks.sees_node(who, s.node, members[s.node].labels)]
        return pb.ConfigStatusResponse(nodes=[config_status_message(s) for s in found])

    async def ListAudit(self, request: pb.ListAuditRequest, context: Context) -> pb.ListAuditResponse:
        await self._check(context, "ListAudit", lambda: self.checks.read_audit(guard.current()))
        entries = audit.listing(self.fleet.store.mirror, request.since, request.limit)
        return pb.ListAuditResponse(entries=[pb.AuditEntry(
            time=e.time, who=e.who, action=e.action, detail=e.detail, ok=e.ok, result=e.result,
            controller_id=e.controller_id) for e in entries])

    async def TailLog(self, request: pb.FleetTailRequest, context: Context) -> AsyncIterator:
        chunks = tailing.tail(self.fleet, self.checks, guard.current(), request.node, request.request,
                              timeout=self.command_timeout)
        try:
            async for chunk in chunks:
                yield chunk
        except PermissionDenied as exc:
            await self._refuse(context, "TailLog", exc)
        except ERRORS as exc:
            await self._fail(context, exc)

    # -- writes ------------------------------------------------------------------------------

    async def PushConfig(self, request: pb.PushConfigRequest, context: Context) -> pb.PushConfigResponse:
        shown_name = request.name if len(request.name) <= 64 else request.name[:64] + "..."
        if not request.dry_run:
            _writing("config.push", {"name": shown_name, "message": request.message[:200]})
        if refusal := config_name_refusal(request.name) or config_size_refusal(request.config_text):
            await self._fail(context, InvalidArgument(refusal))
        selector = selector_of(request.assignment)
        args = {"name": request.name, "nodes": list(selector.nodes), "labels": selector.labels,
                "message": request.message, "rolling": request.HasField("rollout")}
        who = caller(context)
        defined = await self._programs(context, request.name, request.config_text)
        await self._check(context, "PushConfig", lambda: self._check_deploy(request.name, defined, selector))
        rollout = await self._core(context, lambda: spec_of(request.rollout)) if request.HasField("rollout") else None
        planner = (self.operations.rollout_planner(rollout, request.name, who, request.message)
                   if rollout is not None else None)
        if request.dry_run:
            return await self._push_plan(context, request, selector, planner)
        return await self._write(context, "PushConfig", "config.push", args,
                                 lambda: self._stored(request.name, self.fleet.configs.push(
                                     request.name, request.config_text, selector, request.message, who,
                                     rollout=planner)),
                                 _pushed_summary)

    async def _push_plan(self, context: Context, request: pb.PushConfigRequest, selector: Selector,
                         planner: RolloutPlanner | None) -> pb.PushConfigResponse:
        """A push's dry run: every check of the push, and what it would store and start."""
        try:
            result = await self.fleet.configs.push(request.name, request.config_text, selector, request.message,
                                                   caller(context), rollout=planner, dry_run=True)
        except ERRORS as exc:
            await self._fail(context, exc)
        reply = pb.PushConfigResponse(revision=pb.ConfigRevision(name=request.name, revision=result.revision),
                                      target_nodes=result.targets, unchanged=result.unchanged)
        if result.plan is not None:
            reply.plan.CopyFrom(operation_message(result.plan))
            reply.plan.id = ""
            known = configs.local_names(self.fleet.membership.members().values()) | self.fleet.configs.defined_names()
            reply.plan.gates.update(await asyncio.to_thread(configs.gates, request.name, request.config_text, known))
        return reply

    async def RollbackConfig(self, request: pb.RollbackConfigRequest, context: Context) -> pb.PushConfigResponse:
        args = {"name": request.name[:100], "to": request.to_revision, "message": request.message[:200]}
        _writing("config.rollback", args)

        history = await self._check(context, "RollbackConfig", lambda: configs.revisions_of(
            self.fleet.store.items(records.revisions_prefix(request.name)), request.name))
        if request.to_revision in history:  # else the rollback itself says NotFound
            defined = await self._programs(context, request.name, history[request.to_revision].text)
            await self._check(context, "RollbackConfig",
                              lambda: self._check_deploy(request.name, defined, Selector()))
        return await self._write(context, "RollbackConfig", "config.rollback", args,
                                 lambda: self._stored(request.name, self.fleet.configs.rollback(
                                     request.name, request.to_revision, request.message, caller(context))),
                                 _pushed_summary)

    async def DeleteConfig(self, request: pb.DeleteConfigRequest, context: Context) -> pb.DeleteConfigResponse:
        args: dict[str, object] = {"name": request.name, "message": request.message}
        _writing("config.delete", args)
        store = self.fleet.configs
        assignment = await self._check(context, "DeleteConfig", lambda: store.assignment(request.name))
        # Deleting takes the config's programs off its nodes: the deploy a push of it would need.
        # An unknown name needs deploy everywhere, to be told that it is unknown.
        current = store.current_configs().get(request.name) if assignment and not assignment.deleted_by else None
        defined = await self._programs(context, request.name, current.text) if current is not None else []
        selector = assignment.target() if assignment is not None and not assignment.deleted_by else Selector()
        await self._check(context, "DeleteConfig", lambda: self.checks.deploy(guard.current(), selector, defined))

        async def work() -> pb.DeleteConfigResponse:
            number, targets = await store.delete(request.name, caller(context))
            return pb.DeleteConfigResponse(name=request.name, last_revision=number, target_nodes=targets)
        return await self._write(context, "DeleteConfig", "config.delete", args, work, _deleted_summary)

    async def _programs(self, context: Context, name: str, text: str) -> list[tuple[str, str, str | None]]:
        """The processes config `name` defines, parsed in a worker thread: a big config must not
        stall the controller's loop (the parse reads nothing the loop changes). depends_on may
        name any node's own programs, or any config's, here; the push checks those of its targets."""
        known = configs.local_names(self.fleet.membership.members().values()) | self.fleet.configs.defined_names()
        try:
            return await asyncio.to_thread(configs.programs, name, text, known)
        except ERRORS as exc:
            await self._fail(context, exc)

    def _check_deploy(self, name: str, defined: list[tuple[str, str, str | None]], selector: Selector) -> None:
        """A push of config `name` defining `defined` (an empty selector: where it goes now)."""
        current = self.fleet.configs.current_configs().get(name)
        if selector.empty and current is not None:
            selector = current.selector
        self.checks.deploy(guard.current(), selector, defined)

    async def _stored(self, name: str, push: Awaitable[PushResult]) -> pb.PushConfigResponse:
        result = await push
        _, rev, _ = self.fleet.configs.revision(name, result.revision)
        return pb.PushConfigResponse(revision=revision_message(name, result.revision, rev, text=False),
                                     target_nodes=result.targets, unchanged=result.unchanged,
                                     operation_id=result.operation_id)

    async def Control(self, request: pb.ControlRequest, context: Context) -> pb.ControlResponse:
        action = _enum_name(pb.ControlAction, request.action).lower() if request.action else "unspecified"
        args: dict[str, object] = {"patterns": list(request.patterns), "labels": dict(request.labels),
                                   "signal": request.signal}
        command = fanout.Command(action=action, patterns=list(request.patterns), labels=dict(request.labels),
                                 signal=request.signal, wait=request.wait,
                                 node_timeout=request.node_timeout_seconds)
        who = guard.current()

        async def work() -> pb.ControlResponse:
            results = await fanout.control(self.fleet, command, default_timeout=self.command_timeout,
                                           check=lambda targets: self.checks.control(who, targets))
            return pb.ControlResponse(nodes=[node_result_message(r) for r in results])
        return await self._write(context, "Control", f"control.{action}", args, work,
                                 lambda response: fanout.summary(response.nodes),
                                 lambda response: all(n.ok for n in response.nodes))

    # -- operations ------------------------------------------------------------------------------

    async def StartOperation(self, request: pb.StartOperationRequest, context: Context) -> pb.Operation:
        if request.spec.kind == pb.AGENT_UPGRADE:
            return await self._start_upgrade(request, context)
        if not request.dry_run:
            _writing("ops.rolling-restart", {"group": request.spec.group[:100], "message": request.message[:200]})
        if request.spec.kind not in (pb.OPERATION_KIND_UNSPECIFIED, pb.ROLLING_RESTART):
            await self._fail(context, InvalidArgument("config rollouts start with a rolling config push"))
        spec = await self._core(context, lambda: spec_of(request.spec))
        await self._check(context, "StartOperation",
                          lambda: self.checks.deploy_group(guard.current(), spec.selector, spec.group))
        planned = await self._core(context, lambda: self.operations.plan_restart(spec, caller(context),
                                                                                 request.message))
        if request.dry_run:
            planned.id = ""
            plan = operation_message(planned)
            plan.gates.update(self.operations.gates(planned))
            return plan
        args = {"group": spec.group, "nodes": list(spec.selector.nodes), "labels": dict(spec.selector.labels),
                "batch": spec.batch, "max_unavailable": spec.max_unavailable, "message": request.message}
        return operation_message(await self._write(
            context, "StartOperation", "ops.rolling-restart", args, lambda: self.operations.create(planned),
            lambda op: f"operation {op.id}: {len(op.batches)} batches"))

    async def _start_upgrade(self, request: pb.StartOperationRequest, context: Context) -> pb.Operation:
        """A rolling agent upgrade: planned first (the globs and labels name the nodes), then
        deploy on each whole node, as the agents' own Reexec requires."""
        selector = request.spec.selector
        args: dict[str, object] = {"nodes": list(selector.nodes)[:100], "labels": dict(selector.labels),
                                   "expect_version": request.spec.expect_version[:100],
                                   "message": request.message[:200]}
        if not request.dry_run:
            _writing("ops.rolling-upgrade", args)
        spec = await self._core(context, lambda: spec_of(request.spec))
        planned = await self._core(context, lambda: self.operations.plan_upgrade(spec, caller(context),
                                                                                 request.message))
        members = self.fleet.membership.members()
        await self._check(context, "StartOperation", lambda: self.checks.whole_nodes(
            guard.current(), [members[n] for n in _nodes(planned) if n in members]))
        if request.dry_run:
            planned.id = ""
            return operation_message(planned)
        args["batch"], args["max_unavailable"] = spec.batch, spec.max_unavailable
        return operation_message(await self._write(
            context, "StartOperation", "ops.rolling-upgrade", args, lambda: self.operations.create(planned),
            lambda op: f"operation {op.id}: {len(op.batches)} batches"))

    async def ListOperations(self, request: pb.ListOperationsRequest, context: Context) -> pb.ListOperationsResponse:
        ops = await self._core(context, lambda: self.operations.list(request.all))
        who = guard.current()
        if not self.checks.sees_all(who):  # members decoded once, not per operation
            members = self.fleet.membership.members()
            ops = [op for op in ops if self.checks.sees_operation(who, op.spec.group, _nodes(op), members)]
        return pb.ListOperationsResponse(operations=[operation_message(op) for op in ops])

    async def GetOperation(self, request: pb.GetOperationRequest, context: Context) -> pb.Operation:
        return operation_message(await self._read_operation(context, "GetOperation", request.id))

    async def _read_operation(self, context: Context, method: str, op_id: str) -> opmodel.Operation:
        """Read on operation `op_id`; as for configs, a scoped caller is not told which exist."""
        who = guard.current()
        everything = self.checks.sees_all(who)  # then no member need be looked at

        def check() -> opmodel.Operation:
            try:
                op = self.operations.get(op_id)
            except NotFound:
                if not everything:
                    self.checks.read_operation(who, op_id, "", (), {})
                raise
            if not everything:
                self.checks.read_operation(who, op_id, op.spec.group, _nodes(op), self.fleet.membership.members())
            return op
        return await self._check(context, method, check)

    async def WatchOperation(self, request: pb.GetOperationRequest, context: Context) -> AsyncIterator[pb.Operation]:
        last = None
        while True:
            seen = self.fleet.changes
            op = await self._read_operation(context, "WatchOperation", request.id)
            if op != last:
                yield operation_message(op)
                last = op
            if op.state in opmodel.ENDED:
                return
            await self.fleet.wait_change(STATUS_PERIOD, since=seen)

    async def _check_operation(self, context: Context, method: str, op_id: str) -> None:
        """Deploy on the operation's selector (and, for a restart, its group; for an agent
        upgrade, on each of its whole nodes)."""
        def check() -> None:
            op = self.operations.get(op_id)
            spec = op.spec
            if spec.kind is opmodel.Kind.AGENT_UPGRADE:
                members = self.fleet.membership.members()
                self.checks.whole_nodes(guard.current(), [members[n] for n in _nodes(op) if n in members])
            elif spec.kind is opmodel.Kind.ROLLING_RESTART:
                self.checks.deploy_group(guard.current(), spec.selector, spec.group)
            else:
                self.checks.deploy(guard.current(), spec.selector, ())
        await self._check(context, method, check)

    async def PauseOperation(self, request: pb.GetOperationRequest, context: Context) -> pb.Operation:
        _writing("ops.pause", {"id": request.id[:100]})
        await self._check_operation(context, "PauseOperation", request.id)
        return operation_message(await self._write(
            context, "PauseOperation", "ops.pause", {"id": request.id, "reason": request.reason},
            lambda: self.operations.pause(request.id, request.reason), _op_summary))

    async def ResumeOperation(self, request: pb.GetOperationRequest, context: Context) -> pb.Operation:
        _writing("ops.resume", {"id": request.id[:100]})
        await self._check_operation(context, "ResumeOperation", request.id)
        return operation_message(await self._write(
            context, "ResumeOperation", "ops.resume", {"id": request.id},
            lambda: self.operations.resume(request.id), _op_summary))

    async def AbortOperation(self, request: pb.GetOperationRequest, context: Context) -> pb.Operation:
        _writing("ops.abort", {"id": request.id[:100]})
        await self._check_operation(context, "AbortOperation", request.id)
        return operation_message(await self._write(
            context, "AbortOperation", "ops.abort", {"id": request.id, "reason": request.reason},
            lambda: self.operations.abort(request.id, request.reason), _op_summary))

    # -- administration: reads on any controller, writes on the leader -----------------------------

    async def ListPolicies(self, request: pb.ListPoliciesRequest, context: Context) -> pb.ListPoliciesResponse:
        return pb.ListPoliciesResponse(policies=[wire.policy_to_pb(p) for p in self.admin.policies()])

    async def SetPolicy(self, request: pb.SetPolicyRequest, context: Context) -> pb.Policy:
        if request.policy.ByteSize() > MAX_POLICY_BYTES:  # refused unread: too big for the audit log too
            _writing("acl.set", {"name": request.policy.name[:100], "bytes": request.policy.ByteSize()})
            await self._fail(context, InvalidArgument(f"a policy is limited to {MAX_POLICY_BYTES} bytes"))
        args: dict[str, object] = MessageToDict(request.policy, preserving_proto_field_name=True)

        async def work() -> tuple[Policy, str]:
            policy = policy_of(request.policy)
            return policy, await self.admin.set_policy(policy)
        policy, _ = await self._write(context, "SetPolicy", "acl.set", args, work,
                                      lambda r: f"policy {r[0].name} {r[1]}")
        return wire.policy_to_pb(policy)

    async def DeletePolicy(self, request: pb.DeletePolicyRequest, context: Context) -> pb.DeletePolicyResponse:
        await self._write(context, "DeletePolicy", "acl.delete", {"name": request.name[:100]},
                          lambda: self.admin.delete_policy(request.name),
                          lambda _: f"policy {shown(request.name)} deleted")
        return pb.DeletePolicyResponse()

    async def ForgetNode(self, request: pb.ForgetNodeRequest, context: Context) -> pb.ForgetNodeResponse:
        await self._write(context, "ForgetNode", "node.forget", {"node": request.node[:100]},
                          lambda: self.admin.forget_node(request.node),
                          lambda configs: _forget_summary(request.node, configs))
        return pb.ForgetNodeResponse()

    async def RevokeCertificate(self, request: pb.RevokeCertificateRequest, context: Context) -> pb.Revocation:
        args: dict[str, object] = {"serial": request.serial[:100], "name": request.name[:100]}
        revoked = await self._write(context, "RevokeCertificate", "certs.revoke", args,
                                    lambda: self.admin.revoke(request.serial, request.name, caller(context)),
                                    _revoke_summary)
        return revocation_message(revoked.record)

    async def ListRevocations(self, request: pb.ListRevocationsRequest,
                              context: Context) -> pb.ListRevocationsResponse:
        return pb.ListRevocationsResponse(revoked=[revocation_message(r) for r in self.admin.revocations()])

    # -- nodes an operator takes in hand: deploy on the node, on the leader ----------------------

    async def _on_node(self, context: Context, method: str, action: str, node: str,
                       args: dict[str, object], work: Callable[[], Awaitable[str]]) -> pb.NodeInfo:
        _writing(action, {"node": node[:100], **args})
        member = self.fleet.membership.member(node)
        if member is None:
            await self._fail(context, NotFound(f"no such node: {shown(node)}"))
        await self._check(context, method, lambda: self.checks.deploy(guard.current(), Selector(nodes=(node,)), ()))
        await self._write(context, method, action, {"node": node, **args}, work, lambda line: line)
        info = next(n for n in self.fleet.views.nodes({}) if n.name == node)
        return node_message(info)

    async def AdoptNode(self, request: pb.AdoptNodeRequest, context: Context) -> pb.NodeInfo:
        def desired() -> str:
            member = self.fleet.membership.member(request.node)
            return self.fleet.configs.desired(member).revision if member is not None else ""
        return await self._on_node(context, "AdoptNode", "node.adopt", request.node, {"keep": request.keep},
                                   lambda: self.fleet.overrides.adopt(request.node, request.keep, desired(),
                                                                      caller(context)))

    async def PinNode(self, request: pb.PinNodeRequest, context: Context) -> pb.NodeInfo:
        return await self._on_node(context, "PinNode", "node.pin", request.node, {"reason": request.reason[:200]},
                                   lambda: self.fleet.overrides.pin(request.node, request.reason[:200],
                                                                    caller(context)))

    async def UnpinNode(self, request: pb.PinNodeRequest, context: Context) -> pb.NodeInfo:
        return await self._on_node(context, "UnpinNode", "node.unpin", request.node, {},
                                   lambda: self.fleet.overrides.unpin(request.node, caller(context)))

    # -- the dashboard's login -------------------------------------------------------------------

    async def MintDashboardToken(self, request: pb.DashboardTokenRequest, context: Context) -> pb.DashboardToken:
        if self.tokens is None:
            await self._fail(context, FailedPrecondition("this controller has no dashboard token key yet"))
        who = guard.current()
        if refused := tokens.refusal(who):
            await self._refuse(context, "MintDashboardToken", PermissionDenied(refused))
        try:
            token, claims = self.tokens.mint(who, request.ttl_seconds)
        except tokens.TokenError as exc:
            await self._fail(context, InvalidArgument(str(exc)))
        # the login is audited by its id and expiry, never the token itself
        store = self.fleet.store
        await audit.record(store.client, store.prefix, audit.entry(
            caller(context), "dashboard.login", {"token_id": claims.token_id, "expires_at": claims.expires_at},
            True, f"dashboard token {claims.token_id} issued", self.fleet.id))
        return pb.DashboardToken(token=token, expires_at=claims.expires_at, url=self.dashboard_url)

    async def RotateDashboardKey(self, request: pb.RotateDashboardKeyRequest,
                                 context: Context) -> pb.RotateDashboardKeyResponse:
        key = await self._write(context, "RotateDashboardKey", "dashboard.rotate-key", {},
                                lambda: tokens.rotate_key(self.fleet.store),
                                lambda made: f"dashboard token key {tokens.key_id(made)}: older tokens are refused")
        return pb.RotateDashboardKeyResponse(key_id=tokens.key_id(key))


def _forget_summary(node: str, configs: list[str]) -> str:
    taken = f"; taken out of the assignments of {', '.join(configs)}" if configs else ""
    return f"node {shown(node)} forgotten{taken}"


def _revoke_summary(revoked: Revoked) -> str:
    r = revoked.record
    if not revoked.new:
        return f"certificate {r.serial} was revoked already, by {r.who}"
    return f"certificate {r.serial}{f' ({r.name})' if r.name else ''} revoked"


def _op_summary(op: opmodel.Operation) -> str:
    return f"operation {op.id} is {op.state.word}"


def _pushed_summary(response: pb.PushConfigResponse) -> str:
    rev = response.revision
    if response.unchanged:
        return f"{rev.name} unchanged at revision {rev.revision}"
    rolling = f", rolled out by operation {response.operation_id}" if response.operation_id else ""
    return f"{rev.name} revision {rev.revision} for {', '.join(response.target_nodes) or 'no node yet'}{rolling}"


def _deleted_summary(response: pb.DeleteConfigResponse) -> str:
    return (f"config {response.name} deleted at revision {response.last_revision}; its programs are removed "
            f"from {', '.join(response.target_nodes) or 'no node'}")


# -- the wire's messages from the core's values, and back ------------------------------------------

def selector_of(assignment: pb.Assignment) -> Selector:
    return Selector(tuple(assignment.nodes), dict(assignment.labels))


def policy_of(message: pb.Policy) -> Policy:
    try:
        return wire.policy_from_pb(message)
    except PolicyError as exc:
        raise InvalidArgument(str(exc)) from None


def revocation_message(r: RevocationRecord) -> pb.Revocation:
    return pb.Revocation(serial=r.serial, name=r.name, who=r.who, time=r.time)


def assignment_message(selector: Selector) -> pb.Assignment:
    return pb.Assignment(nodes=list(selector.nodes), labels=selector.labels)


def _enum_name(enum: Any, number: int) -> str:
    """The name of a known value, else the number (proto3 enums are open: a newer client may send
    one this controller does not know), which the core then refuses as no such value."""
    return enum.Name(number) if number in enum.values() else str(number)


def spec_of(spec: pb.OperationSpec) -> opmodel.Spec:
    """Raises InvalidArgument for a kind or on_failure this controller does not know."""
    for what, enum, number in (("kind", pb.OperationKind, spec.kind), ("on_failure", pb.OnFailure, spec.on_failure)):
        if number not in enum.values():
            raise InvalidArgument(f"unknown operation {what} {number}")
    return opmodel.Spec(
        kind=opmodel.Kind(pb.OperationKind.Name(spec.kind)), group=spec.group, selector=selector_of(spec.selector),
        batch=spec.batch, max_unavailable=spec.max_unavailable, healthy_for_seconds=spec.healthy_for_seconds,
        timeout_seconds=spec.timeout_seconds, on_failure=opmodel.OnFailure(pb.OnFailure.Name(spec.on_failure)),
        canary=spec.canary, auto_revert=spec.auto_revert, config_name=spec.config_name,
        config_revision=spec.config_revision, previous_revision=spec.previous_revision,
        expect_version=spec.expect_version)


def operation_message(op: opmodel.Operation) -> pb.Operation:
    s = op.spec
    spec = pb.OperationSpec(
        kind=pb.OperationKind.Value(s.kind), group=s.group, selector=assignment_message(s.selector), batch=s.batch,
        max_unavailable=s.max_unavailable, healthy_for_seconds=s.healthy_for_seconds,
        timeout_seconds=s.timeout_seconds, on_failure=pb.OnFailure.Value(s.on_failure), canary=s.canary,
        auto_revert=s.auto_revert, config_name=s.config_name, config_revision=s.config_revision,
        previous_revision=s.previous_revision, expect_version=s.expect_version)
    return pb.Operation(
        id=op.id, spec=spec, state=pb.OperationState.Value(op.state), current_batch=op.current_batch,
        reason=op.reason, author=op.author, message=op.message, created_at=op.created_at,
        updated_at=op.updated_at, controller_id=op.controller_id,
        batches=[pb.OperationBatch(nodes=[pb.NodeStep(
            node=step.node, state=pb.NodeStepState.Value(step.state), error=step.error, started_at=step.started_at,
            healthy_at=step.healthy_at, done_at=step.done_at, pids_before=step.pids_before,
            **_agent_versions(step.agent)) for step in batch.nodes]) for batch in op.batches])


def _agent_versions(agent: opmodel.AgentMark | None) -> dict[str, str]:
    if agent is None:
        return {}
    return {"agent_version_before": agent.version_before, "agent_version_expected": agent.version_expected,
            "agent_version_after": agent.version_after}


def _nodes(op: opmodel.Operation) -> list[str]:
    return [s.node for s in op.steps()]


def revision_message(name: str, number: int, rev: RevisionRecord, *, text: bool,
                     withdrawn: str = "") -> pb.ConfigRevision:
    return pb.ConfigRevision(
        name=name, revision=number, config_text=rev.text if text else "", author=rev.author, message=rev.message,
        created_at=rev.created_at, rollback_of=rev.rollback_of, sha256=rev.sha256,
        assignment=assignment_message(configs.selector_of(rev)), withdrawn=withdrawn)


def node_message(n: NodeInfo) -> pb.NodeInfo:
    return pb.NodeInfo(
        name=n.name, address=n.address, labels=n.labels, agent_version=n.agent_version, up=n.up,
        reachable=n.reachable, last_heartbeat=n.last_heartbeat, state_as_of=n.state_as_of,
        applied_revision=n.applied_revision, desired_revision=n.desired_revision, error=n.error,
        started_at=n.started_at, edited_by_hand=n.edited_by_hand, foreign=n.foreign,
        local_revision=n.local_revision, pinned=n.pinned, pinned_by=n.pinned_by, cluster_id=n.cluster_id)


def staleness_message(fresh: Freshness) -> pb.Staleness | None:
    if not fresh.etcd_unavailable:
        return None
    return pb.Staleness(etcd_unavailable=True, as_of=fresh.as_of, reason=fresh.reason)


def status_message(status: FleetStatus) -> pb.FleetStatus:
    # the processes are the agent client's own messages (livestate.py): passed on as they are
    return pb.FleetStatus(nodes=[pb.NodeProcesses(node=node_message(n.node),
                                                  processes=cast(list[apb.ProcessInfo], n.processes))
                                 for n in status.nodes], now=status.now, controller_id=status.controller_id,
                          stale=staleness_message(status.freshness))


def summary_message(s: summary.FleetSummary) -> pb.FleetSummary:
    return pb.FleetSummary(
        nodes=s.nodes, nodes_up=s.nodes_up, nodes_reachable=s.nodes_reachable, processes=s.processes,
        running=s.running, problems_total=s.problems_total,
        groups=[pb.GroupSummary(group=g.group, total=g.total, running=g.running, problems=g.problems, states=[
            pb.StateCount(state=c.state, count=c.count, nodes=heapq.nsmallest(summary.NODES_PER_STATE, c.nodes),
                          nodes_total=len(c.nodes))
            for c in sorted(g.states.values(), key=lambda c: (-c.count, c.state))]) for g in s.groups],
        problems=[pb.Problem(kind=cast(pb.Problem.Kind, int(p.kind)), node=p.node, subject=p.subject,
                             state=p.state, detail=p.detail, since=p.since) for p in s.problems])


def config_status_message(s: NodeConfigStatus) -> pb.NodeConfigStatus:
    message = pb.NodeConfigStatus(
        node=s.node, desired_revision=s.desired_revision, applied_revision=s.applied_revision, in_sync=s.in_sync,
        last_error=s.last_error, last_attempt=s.last_attempt, attempts=s.attempts,
        edited_by_hand=s.edited_by_hand, up=s.up, held=s.held)
    if s.refused:  # filling a map field costs even when empty: most of this message at 5000 nodes
        message.refused.update(s.refused)
    return message


def node_result_message(r: fanout.NodeResult) -> pb.NodeResult:
    return pb.NodeResult(node=r.node, ok=r.ok, error=r.error, seconds=r.seconds, results=[
        apb.ProcessResult(name=p.name, ok=p.ok, status=p.status, description=p.description,
                          state=cast(apb.ProcessState, p.state))
        for p in r.results])
