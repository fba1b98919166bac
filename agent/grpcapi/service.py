"""The agent's gRPC face: AgentService over the same operations as XML-RPC.

Errors are gRPC status codes: a request-level problem (unknown name, bad signal, bad config,
shutting down) fails the call; what happens to each process is reported in its result.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import NoReturn

import grpc

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from .. import operations
from ..caller import Caller
from ..config.errors import ConfigError
from ..detached import carried_through
from ..faults import Fault, FaultError
from ..fleetconfig import FleetConfig, apply_refusal, control_refusal
from ..health import Health
from ..journal import Journal
from ..logfiles import LogReadError, read_log, tail_bytes_refusal
from ..logfollow import follow_pieces
from ..process import Process
from ..security import guard
from ..security.policy import CONTROL, DEPLOY, READ
from ..states import ProcessState, SupervisorState
from ..supervisor import GroupChange, HealthChange, ProcessStateChange, Supervisor, SupervisorStateChange
from .authorize import Access
from .details import details

_STATE = {s: getattr(pb, s.name) for s in ProcessState}
_MOOD = {SupervisorState.RUNNING: pb.SUPERVISOR_RUNNING, SupervisorState.RESTARTING: pb.SUPERVISOR_RESTARTING,
         SupervisorState.SHUTDOWN: pb.SUPERVISOR_SHUTDOWN, SupervisorState.FATAL: pb.SUPERVISOR_FATAL}
_STATUS_FOR_FAULT = {
    Fault.BAD_NAME: grpc.StatusCode.NOT_FOUND,
    Fault.BAD_SIGNAL: grpc.StatusCode.INVALID_ARGUMENT,
    Fault.BAD_ARGUMENTS: grpc.StatusCode.INVALID_ARGUMENT,
    Fault.INCORRECT_PARAMETERS: grpc.StatusCode.INVALID_ARGUMENT,
    Fault.NO_FILE: grpc.StatusCode.FAILED_PRECONDITION,
    Fault.NOT_RUNNING: grpc.StatusCode.FAILED_PRECONDITION,
    Fault.SHUTDOWN_STATE: grpc.StatusCode.UNAVAILABLE,
    Fault.CANT_REREAD: grpc.StatusCode.INVALID_ARGUMENT,
}


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return Caller("grpc", context.peer() or "")


_HEALTH = {Health.UNKNOWN: pb.HEALTH_UNKNOWN, Health.HEALTHY: pb.HEALTHY, Health.UNHEALTHY: pb.UNHEALTHY}


def process_info(proc: Process, now: float | None = None) -> pb.ProcessInfo:
    info = operations.process_info(proc, now)
    verdict = proc.health.verdict if proc.health is not None else None
    return pb.ProcessInfo(
        name=info.name, group=info.group, namespec=operations.make_namespec(info.group, info.name),
        state=_STATE[info.state], statename=info.state.name, pid=info.pid, start=info.start, stop=info.stop,
        now=info.now, exitstatus=info.exitstatus, spawnerr=info.spawnerr, description=info.description,
        stdout_logfile=info.stdout_logfile, stderr_logfile=info.stderr_logfile,
        health=_HEALTH[verdict.health] if verdict else pb.HEALTH_UNSPECIFIED,
        health_message=verdict.message if verdict else "",
        # supervisord's "not expected": the controller cannot tell without the program's exitcodes
        exited_unexpectedly=info.state == ProcessState.EXITED and info.exitstatus not in proc.config.exitcodes)


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, core: Supervisor, journal: Journal, fleet: FleetConfig, access: Access) -> None:
        self.core = core
        self.journal = journal
        self.fleet = fleet
        self.access = access
        # Called with the revision id after a revision was applied (not on dry runs): the
        # heartbeat tells the controller at once instead of at its next interval.
        self.on_applied: list[Callable[[str], None]] = []

    # -- helpers -------------------------------------------------------------------------------

    async def _fail(self, context: grpc.aio.ServicerContext, exc: FaultError | ConfigError) -> NoReturn:
        if isinstance(exc, ConfigError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, details(str(exc)))
        else:
            code = _STATUS_FOR_FAULT.get(exc.code, grpc.StatusCode.FAILED_PRECONDITION)
            await context.abort(code, details(exc.text))
        raise AssertionError("abort returned")  # it raises; this tells the type checker

    async def _command(self, request: pb.ProcessCommand | pb.SignalCommand, context: grpc.aio.ServicerContext,
                       act: Callable[..., Awaitable[list[operations.ProcessResult]]],
                       argument: object) -> pb.CommandResponse:
        """`act` (a multi-target call of the core) on the processes the request names."""
        if not request.all and not request.names:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "no process names given (use all=true for every process)")
        caller = _caller(context)
        try:
            operations.ensure_running(self.core)
            procs = operations.resolve(self.core, caller, ["all"] if request.all else request.names)
        except FaultError as exc:
            await self._fail(context, exc)
        await self.access.processes(context, CONTROL, procs)
        who = guard.current()
        if isinstance(request, pb.ProcessCommand) and act in (operations.start_processes, operations.stop_processes):
            await self._managed(context, request, "start" if act is operations.start_processes else "stop", procs,
                                who.role if who.verified else "")
        try:
            results = await carried_through(act(self.core, caller, procs, argument))
        except FaultError as exc:
            await self._fail(context, exc)
        return pb.CommandResponse(results=[
            pb.ProcessResult(name=r.namespec, ok=r.ok, status=r.status.name, description=r.description,
                             state=_STATE[r.state]) for r in results])

    async def _managed(self, context: grpc.aio.ServicerContext, request: pb.ProcessCommand, action: str,
                       procs: list[Process], role: str) -> None:
        """A per-node start or stop of fleet programs on a node with controllers needs `force`."""
        applied = self.fleet.store.current()
        owned = set(applied.sections()) if applied is not None else set()
        groups = sorted({p.group.name for p in procs if p.group.name in owned})
        node = operations.agent_info(self.core, _caller(context), self.fleet).node
        refusal = control_refusal(node, self.controllers(), action, groups, cluster_id=request.cluster_id,
                                  force=request.force, role=role)
        if refusal:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)

    # -- AgentService ----------------------------------------------------------------------------

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.AgentInfo:
        await self.access.on_node(context, READ)
        return self._info(_caller(context))

    def _info(self, caller: Caller) -> pb.AgentInfo:
        info = operations.agent_info(self.core, caller, self.fleet)
        applied = self.fleet.store.current()
        return pb.AgentInfo(
            node=info.node, labels=dict(info.labels), agent_version=info.agent_version,
            supervisor_version=info.supervisor_version, api_version=info.api_version,
            applied_revision=info.applied_revision, started_at=info.started_at, uptime_seconds=info.uptime,
            state=_MOOD[info.state], pid=info.pid, identifier=info.identifier, controllers=self.controllers(),
            fleet_sections=applied.sections() if applied is not None else [],
            local_revision=applied is not None and applied.local, asyncio_tasks=len(asyncio.all_tasks()))

    async def Reexec(self, request: pb.ReexecRequest, context: grpc.aio.ServicerContext) -> pb.ReexecResponse:
        await self.access.on_whole_node(context, DEPLOY)
        try:
            version = await operations.reexec_daemon(self.core, _caller(context), dry_run=request.dry_run)
        except FaultError as exc:
            await self._fail(context, exc)
        return pb.ReexecResponse(pid=os.getpid(), agent_version=version)

    async def ListProcesses(self, request: pb.ListProcessesRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListProcessesResponse:
        await self.access.on_node(context, READ)
        try:
            procs = operations.resolve(self.core, _caller(context), request.names or ["all"])
        except FaultError as exc:
            await self._fail(context, exc)
        if request.names:  # asked for by name: refused, not silently left out
            await self.access.processes(context, READ, procs)
        procs = self.access.readable(procs)
        now = time.time()
        return pb.ListProcessesResponse(processes=[process_info(p, now) for p in procs], now=now)

    async def Start(self, request: pb.ProcessCommand, context: grpc.aio.ServicerContext) -> pb.CommandResponse:
        return await self._command(request, context, operations.start_processes, request.wait)

    async def Stop(self, request: pb.ProcessCommand, context: grpc.aio.ServicerContext) -> pb.CommandResponse:
        return await self._command(request, context, operations.stop_processes, request.wait)

    async def Restart(self, request: pb.ProcessCommand, context: grpc.aio.ServicerContext) -> pb.CommandResponse:
        return await self._command(request, context, operations.restart_processes, request.wait)

    async def Signal(self, request: pb.SignalCommand, context: grpc.aio.ServicerContext) -> pb.CommandResponse:
        return await self._command(request, context, operations.signal_processes, request.signal)

    async def WatchEvents(self, request: pb.WatchEventsRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[pb.AgentEvent]:
        await self.access.on_node(context, READ)
        # Headers now: a watcher that resumes may get no event for a long time, and it must
        # still learn at once that the stream is up.
        await context.send_initial_metadata(())
        after = request.after_sequence
        if not self.journal.can_resume(after, request.agent_run_id):
            caller = _caller(context)
            procs = self.access.readable(operations.resolve(self.core, caller, ["all"]))
            after = self.journal.last_sequence
            yield pb.AgentEvent(sequence=after, time=time.time(), agent_run_id=self.journal.run_id,
                                snapshot=pb.Snapshot(processes=[process_info(p) for p in procs],
                                                     info=self._info(caller)))
        async for entry in self.journal.follow(after):
            event = pb.AgentEvent(sequence=entry.sequence, time=entry.time, agent_run_id=self.journal.run_id)
            change = entry.change
            if isinstance(change, ProcessStateChange):
                if not self.access.sees(change.process.group.name, change.process.name):
                    continue
                event.process_state.CopyFrom(pb.ProcessStateEvent(
                    process=process_info(change.process), from_state=_STATE[change.old],
                    expected=bool(change.expected)))
                # the state at the time of the change, not now
                event.process_state.process.state = _STATE[change.new]
                event.process_state.process.statename = change.new.name
            elif isinstance(change, GroupChange):
                if not self.access.sees_group(change.name):
                    continue
                event.group.CopyFrom(pb.GroupEvent(group=change.name, added=change.added))
            elif isinstance(change, SupervisorStateChange):
                event.supervisor_state.CopyFrom(pb.SupervisorStateEvent(state=_MOOD[change.new]))
            elif isinstance(change, HealthChange):
                if not self.access.sees(change.process.group.name, change.process.name):
                    continue
                event.process_health.CopyFrom(pb.ProcessHealthEvent(
                    process=process_info(change.process), from_health=_HEALTH[change.before.health]))
                event.process_health.process.health = _HEALTH[change.after.health]
                event.process_health.process.health_message = change.after.message
            else:
                continue
            yield event

    async def TailLog(self, request: pb.TailLogRequest,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.LogChunk]:
        channel = "stderr" if request.stream == pb.STDERR else "stdout"
        await self.access.on_node(context, READ)
        if refusal := tail_bytes_refusal(request.last_bytes):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
        try:
            await self.access.processes(context, READ, operations.resolve(self.core, _caller(context), [request.name]))
            path = operations.log_path(self.core, _caller(context), request.name, channel, existing=True)
        except FaultError as exc:
            await self._fail(context, exc)
        assert path is not None
        if request.follow:
            size = os.path.getsize(path)
            start = max(0, size - request.last_bytes) if request.last_bytes else request.offset
            start = start if start <= size else 0  # rotated or truncated since the caller read there
            yield pb.LogChunk(offset=start)  # where it starts, before any data: a stream to resume
            async for piece in follow_pieces(path, start=start):
                yield pb.LogChunk(data=piece.data, offset=piece.offset, truncated=piece.truncated)
            return
        try:
            offset, length = (-request.last_bytes, 0) if request.last_bytes else (request.offset, 0)
            data = read_log(path, offset, length)
        except LogReadError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, details(str(exc)))
        yield pb.LogChunk(data=data, offset=os.path.getsize(path))

    async def ApplyConfig(self, request: pb.ApplyConfigRequest,
                          context: grpc.aio.ServicerContext) -> pb.ApplyConfigResponse:
        if not request.revision and not request.dry_run:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a revision id is required")
        who = await self.access.on_node(context, DEPLOY)
        info = operations.agent_info(self.core, _caller(context), self.fleet)
        role = who.role if who.verified else ""
        refusal = apply_refusal(info.node, self.controllers(), cluster_id=request.cluster_id, force=request.force,
                                dry_run=request.dry_run, role=role)
        if refusal:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)
        try:
            operations.ensure_running(self.core)
            plan = await carried_through(self.fleet.apply(
                request.revision, request.config_text, dry_run=request.dry_run, caller=_caller(context),
                permit=partial(self.access.deploy, context), cluster_id=request.cluster_id,
                local=not (request.cluster_id or role == "controller")))
        except (FaultError, ConfigError) as exc:
            await self._fail(context, exc)
        except OSError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"cannot keep the revision in {self.fleet.store.state_dir}: {exc.strerror}")
        if not request.dry_run:
            for hook in self.on_applied:
                hook(request.revision)
        return pb.ApplyConfigResponse(revision=request.revision, added=plan.added, changed=plan.changed,
                                      removed=plan.removed, applied=not request.dry_run)

    def controllers(self) -> list[str]:
        """The controllers this node heartbeats to ([fleetvisor] controllers=): it is managed."""
        fv = self.core.config.fleetvisor
        return [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in fv.controllers] if fv is not None else []

    async def GetConfig(self, request: pb.GetConfigRequest, context: grpc.aio.ServicerContext) -> pb.GetConfigResponse:
        await self.access.on_node(context, READ)
        applied = self.fleet.store.current()
        return pb.GetConfigResponse(revision=applied.revision if applied else "",
                                    config_text=applied.text if applied else "",
                                    edited_by_hand=self.fleet.edited_by_hand(), config_path=self.core.config.path)
