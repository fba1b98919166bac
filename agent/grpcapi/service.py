"""The agent's gRPC face: AgentService over the same operations as XML-RPC.

Errors are gRPC status codes: a request-level problem (unknown name, bad signal, bad config,
shutting down) fails the call; what happens to each process is reported in its result.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from .. import operations
from ..config.errors import ConfigError
from ..faults import Fault, FaultError
from ..fleetconfig import FleetConfig
from ..journal import Journal
from ..logfiles import LogReadError, read_log
from ..logfollow import follow
from ..process import Process
from ..states import ProcessState, SupervisorState
from ..supervisor import GroupChange, ProcessStateChange, Supervisor, SupervisorStateChange
from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

AGENT_VERSION = "0.1.0"

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


def process_info(proc: Process, now: float | None = None) -> pb.ProcessInfo:
    info = operations.process_info(proc, now)
    return pb.ProcessInfo(
        name=info.name, group=info.group, namespec=operations.make_namespec(info.group, info.name),
        state=_STATE[info.state], statename=info.state.name, pid=info.pid, start=info.start, stop=info.stop,
        now=info.now, exitstatus=info.exitstatus, spawnerr=info.spawnerr, description=info.description,
        stdout_logfile=info.stdout_logfile, stderr_logfile=info.stderr_logfile)


class AgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, core: Supervisor, journal: Journal, fleet: FleetConfig) -> None:
        self.core = core
        self.journal = journal
        self.fleet = fleet
        self.started_at = time.time()
        # Called with the revision id after a revision was applied (not on dry runs): the
        # heartbeat tells the controller at once instead of at its next interval.
        self.on_applied: list[Callable[[str], None]] = []

    # -- helpers -------------------------------------------------------------------------------

    async def _fail(self, context: grpc.aio.ServicerContext, exc: FaultError | ConfigError) -> None:
        if isinstance(exc, ConfigError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        code = _STATUS_FOR_FAULT.get(exc.code, grpc.StatusCode.FAILED_PRECONDITION)
        await context.abort(code, exc.text)

    def _targets(self, names: list[str], everything: bool) -> list[Process]:
        """The processes named (name, group:name, group:*, all), in priority order; every name
        is checked before anything is done."""
        if everything or "all" in names:
            return operations.processes_by_priority(self.core)
        chosen: dict[int, Process] = {}
        for spec in names:
            group, proc = operations.lookup(self.core, spec)
            for p in ([proc] if proc is not None else group.processes.values()):
                chosen[id(p)] = p
        order = {id(p): i for i, p in enumerate(operations.processes_by_priority(self.core))}
        return sorted(chosen.values(), key=lambda p: order[id(p)])

    async def _each(self, procs: list[Process], op: Callable[[Process], Awaitable[object]]) -> pb.CommandResponse:
        async def one(proc: Process) -> pb.ProcessResult:
            spec = operations.make_namespec(proc.group.name, proc.name)
            try:
                await op(proc)
            except FaultError as exc:
                return pb.ProcessResult(name=spec, ok=False, status=exc.code.name, description=exc.text,
                                        state=_STATE[proc.state])
            return pb.ProcessResult(name=spec, ok=True, status="SUCCESS", description="OK",
                                    state=_STATE[proc.state])
        return pb.CommandResponse(results=await asyncio.gather(*(one(p) for p in procs)))

    async def _command(self, request, context, op: Callable[[Process], Awaitable[object]]) -> pb.CommandResponse:
        try:
            operations.ensure_running(self.core)
            procs = self._targets(list(request.names), request.all)
        except FaultError as exc:
            await self._fail(context, exc)
        if not procs:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no process names given (use all=true for every process)")
        return await self._each(procs, op)

    def _spec(self, proc: Process) -> str:
        return operations.make_namespec(proc.group.name, proc.name)

    # -- AgentService ----------------------------------------------------------------------------

    async def GetInfo(self, request, context) -> pb.AgentInfo:
        return self._info()

    def _info(self) -> pb.AgentInfo:
        fv = self.core.config.fleetvisor
        applied = self.fleet.store.current()
        now = time.time()
        return pb.AgentInfo(
            node=fv.node if fv else os.uname().nodename, labels=dict(fv.labels) if fv else {},
            agent_version=AGENT_VERSION, supervisor_version=operations.SUPERVISOR_VERSION,
            api_version=operations.API_VERSION, applied_revision=applied.revision if applied else "",
            started_at=self.started_at, uptime_seconds=now - self.started_at, state=_MOOD[self.core.mood],
            pid=os.getpid(), identifier=self.core.config.supervisord.identifier)

    async def ListProcesses(self, request, context) -> pb.ListProcessesResponse:
        try:
            procs = self._targets(list(request.names), not request.names)
        except FaultError as exc:
            await self._fail(context, exc)
        now = time.time()
        return pb.ListProcessesResponse(processes=[process_info(p, now) for p in procs], now=now)

    async def Start(self, request, context) -> pb.CommandResponse:
        return await self._command(request, context, lambda p: operations.start(self.core, self._spec(p), request.wait))

    async def Stop(self, request, context) -> pb.CommandResponse:
        return await self._command(request, context, lambda p: operations.stop(self.core, self._spec(p), request.wait))

    async def Restart(self, request, context) -> pb.CommandResponse:
        async def restart(proc: Process) -> None:
            if proc.state not in (ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL):
                try:
                    await operations.stop(self.core, self._spec(proc), True)
                except FaultError as exc:
                    if exc.code != Fault.NOT_RUNNING:
                        raise
            await operations.start(self.core, self._spec(proc), request.wait)
        return await self._command(request, context, restart)

    async def Signal(self, request, context) -> pb.CommandResponse:
        try:
            sig = operations.signal_number(request.signal)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"BAD_SIGNAL: {exc}")
        return await self._command(request, context, lambda p: operations.signal(self.core, self._spec(p), sig))

    async def WatchEvents(self, request, context) -> AsyncIterator[pb.AgentEvent]:
        # Headers now: a watcher that resumes may get no event for a long time, and it must
        # still learn at once that the stream is up.
        await context.send_initial_metadata(())
        after = request.after_sequence
        if not self.journal.can_resume(after, request.agent_run_id):
            after = self.journal.last_sequence
            yield pb.AgentEvent(sequence=after, time=time.time(), agent_run_id=self.journal.run_id,
                                snapshot=pb.Snapshot(processes=[process_info(p) for p in
                                                                operations.processes_by_priority(self.core)],
                                                     info=self._info()))
        async for entry in self.journal.follow(after):
            event = pb.AgentEvent(sequence=entry.sequence, time=entry.time, agent_run_id=self.journal.run_id)
            change = entry.change
            if isinstance(change, ProcessStateChange):
                event.process_state.CopyFrom(pb.ProcessStateEvent(
                    process=process_info(change.process), from_state=_STATE[change.old],
                    expected=bool(change.expected)))
                # the state at the time of the change, not now
                event.process_state.process.state = _STATE[change.new]
                event.process_state.process.statename = change.new.name
            elif isinstance(change, GroupChange):
                event.group.CopyFrom(pb.GroupEvent(group=change.name, added=change.added))
            elif isinstance(change, SupervisorStateChange):
                event.supervisor_state.CopyFrom(pb.SupervisorStateEvent(state=_MOOD[change.new]))
            else:
                continue
            yield event

    async def TailLog(self, request, context) -> AsyncIterator[pb.LogChunk]:
        try:
            proc = operations.lookup_process(self.core, request.name)
        except FaultError as exc:
            await self._fail(context, exc)
        path = proc.stderr_logfile if request.stream == pb.STDERR else proc.stdout_logfile
        if not path or not os.path.exists(path):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"NO_FILE: {request.name} has no log file")
        if request.follow:
            size = os.path.getsize(path)
            head = request.last_bytes if request.last_bytes else max(0, size - request.offset)
            async for data in follow(path, head=head):
                yield pb.LogChunk(data=data)
            return
        try:
            offset, length = (-request.last_bytes, 0) if request.last_bytes else (request.offset, 0)
            data = read_log(path, offset, length)
        except LogReadError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        yield pb.LogChunk(data=data, offset=os.path.getsize(path))

    async def ApplyConfig(self, request, context) -> pb.ApplyConfigResponse:
        if not request.revision and not request.dry_run:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a revision id is required")
        try:
            operations.ensure_running(self.core)
            plan = await self.fleet.apply(request.revision, request.config_text, dry_run=request.dry_run)
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

    async def GetConfig(self, request, context) -> pb.GetConfigResponse:
        applied = self.fleet.store.current()
        return pb.GetConfigResponse(revision=applied.revision if applied else "",
                                    config_text=applied.text if applied else "",
                                    edited_by_hand=self.fleet.edited_by_hand(), config_path=self.core.config.path)
