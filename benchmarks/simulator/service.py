"""AgentService of a virtual node: the agent's answers, over a process table.

Where the agent's answer comes from a pure function (process facts to protobuf, the refusals of
per-node applies and starts, signal names, namespecs, group diffs) that function is called
here; what needs the agent's core (spawning, files) is the table's bookkeeping instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, NoReturn, TypeAlias, cast

import grpc

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.model import GroupConfig
from fleetvisor.agent.faults import Fault, FaultError
from fleetvisor.agent.fleetconfig import apply_refusal, control_refusal
from fleetvisor.agent.grpcapi.service import process_info
from fleetvisor.agent.logfiles import tail_bytes_refusal
from fleetvisor.agent.operations.control import signal_number
from fleetvisor.agent.operations.info import describe
from fleetvisor.agent.operations.results import API_VERSION, SUPERVISOR_VERSION
from fleetvisor.agent.states import RUNNING_STATES, STOPPED_STATES, ProcessState
from fleetvisor.agent.supervisor import GroupChange, diff_groups
from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from .configs import ConfigCache
from .process_table import Outcome, StateChange, VirtualProcess

if TYPE_CHECKING:
    from fleetvisor.agent.process import Process

    from .node import VirtualNode

Context: TypeAlias = grpc.aio.ServicerContext
FOLLOW_PERIOD = 1.0  # a followed synthetic log is read again this often
_STATE = {s: getattr(pb, s.name) for s in ProcessState}


def facts(proc: VirtualProcess, now: float) -> pb.ProcessInfo:
    """The agent's own conversion: a VirtualProcess has every attribute it reads."""
    return process_info(cast("Process", proc), now)


def event_facts(change: StateChange) -> pb.ProcessInfo:
    """The process as it was right after the change (the agent sends its facts at send time
    with the state of the change; these are the facts of that moment, which agree)."""
    info = facts(change.process, change.when)
    info.state, info.statename = _STATE[change.new], change.new.name
    info.pid, info.start, info.stop = change.pid, int(change.start), int(change.stop)
    info.exitstatus, info.spawnerr = change.exitstatus, change.spawnerr
    info.description = describe(change.new, start=int(change.start), stop=int(change.stop), now=int(change.when),
                                pid=change.pid, spawnerr=change.spawnerr, name=change.process.name)
    return info


def results(outcomes: Sequence[Outcome]) -> pb.CommandResponse:
    return pb.CommandResponse(results=[
        pb.ProcessResult(name=o.process.namespec, ok=o.ok, status=o.status.name, description=o.description,
                         state=_STATE[o.process.state]) for o in outcomes])


def _started(proc: VirtualProcess) -> bool:
    return proc.state not in (ProcessState.STARTING, ProcessState.BACKOFF)


class VirtualAgentServicer(pb_grpc.AgentServiceServicer):
    def __init__(self, node: VirtualNode, configs: ConfigCache) -> None:
        self.node = node
        self.configs = configs

    @property
    def controllers(self) -> list[str]:
        return list(self.node.identity.controllers)

    async def _fault(self, context: Context, exc: FaultError) -> NoReturn:
        code = grpc.StatusCode.NOT_FOUND if exc.code == Fault.BAD_NAME else grpc.StatusCode.FAILED_PRECONDITION
        await context.abort(code, exc.text)
        raise AssertionError("abort raises")

    async def _resolve(self, context: Context, names: Sequence[str]) -> list[VirtualProcess]:
        try:
            return self.node.table.resolve(names)
        except FaultError as exc:
            await self._fault(context, exc)

    async def _targets(self, context: Context, request: pb.ProcessCommand | pb.SignalCommand) -> list[VirtualProcess]:
        if not request.all and not request.names:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "no process names given (use all=true for every process)")
        return await self._resolve(context, ["all"] if request.all else list(request.names))

    async def _managed(self, context: Context, request: pb.ProcessCommand, action: str,
                       procs: list[VirtualProcess]) -> None:
        fleet = self.node.fleet_group_names()
        groups = sorted({p.group.name for p in procs if p.group.name in fleet})
        refusal = control_refusal(self.node.name, self.controllers, action, groups, cluster_id=request.cluster_id,
                                  force=request.force, role="")
        if refusal:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)

    # -- reads ----------------------------------------------------------------------------------

    def info(self) -> pb.AgentInfo:
        node, now = self.node, time.time()
        return pb.AgentInfo(
            node=node.name, labels=node.identity.labels, agent_version=node.describe().agent_version,
            supervisor_version=SUPERVISOR_VERSION, api_version=API_VERSION,
            applied_revision=node.applied.revision, started_at=node.started_at, uptime_seconds=now - node.started_at,
            state=pb.SUPERVISOR_RUNNING, pid=node.agent_pid, identifier="fleetvisor-sim",
            controllers=self.controllers, fleet_sections=node.applied.sections,
            local_revision=node.applied.local and bool(node.applied.revision), asyncio_tasks=0)

    async def GetInfo(self, request: pb.GetInfoRequest, context: Context) -> pb.AgentInfo:
        return self.info()

    async def ListProcesses(self, request: pb.ListProcessesRequest, context: Context) -> pb.ListProcessesResponse:
        procs = await self._resolve(context, list(request.names) or ["all"])
        now = time.time()
        return pb.ListProcessesResponse(processes=[facts(p, now) for p in procs], now=now)

    async def GetConfig(self, request: pb.GetConfigRequest, context: Context) -> pb.GetConfigResponse:
        a = self.node.applied
        return pb.GetConfigResponse(revision=a.revision, config_text=a.text, edited_by_hand=False,
                                    config_path=f"/etc/fleetvisor/{self.node.name}.conf")

    async def WatchEvents(self, request: pb.WatchEventsRequest, context: Context) -> AsyncIterator[pb.AgentEvent]:
        """As the agent's: headers at once, a snapshot unless the caller can resume, then
        every change with its sequence number."""
        self.node.watchers += 1
        try:
            async for event in self._events(request, context):
                yield event
        finally:
            self.node.watchers -= 1

    async def _events(self, request: pb.WatchEventsRequest, context: Context) -> AsyncIterator[pb.AgentEvent]:
        await context.send_initial_metadata(())
        journal = self.node.journal
        after = request.after_sequence
        if not journal.can_resume(after, request.agent_run_id):
            now = time.time()
            after = journal.last_sequence
            yield pb.AgentEvent(sequence=after, time=now, agent_run_id=journal.run_id, snapshot=pb.Snapshot(
                processes=[facts(p, now) for p in self.node.table.processes()], info=self.info()))
        async for entry in journal.follow(after):
            event = pb.AgentEvent(sequence=entry.sequence, time=entry.time, agent_run_id=journal.run_id)
            change = entry.change
            if isinstance(change, StateChange):
                event.process_state.CopyFrom(pb.ProcessStateEvent(
                    process=event_facts(change), from_state=_STATE[change.old], expected=bool(change.expected)))
            elif isinstance(change, GroupChange):
                event.group.CopyFrom(pb.GroupEvent(group=change.name, added=change.added))
            else:
                continue
            yield event

    async def TailLog(self, request: pb.TailLogRequest, context: Context) -> AsyncIterator[pb.LogChunk]:
        if refusal := tail_bytes_refusal(request.last_bytes):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
        procs = await self._resolve(context, [request.name])
        if len(procs) != 1:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"BAD_NAME: {request.name}")
        log = procs[0].output  # stderr is as made up as stdout: one log serves both
        data, end, truncated = log.read(request.offset, time.time(), request.last_bytes)
        if not request.follow:
            yield pb.LogChunk(data=data, offset=end, truncated=truncated)
            return
        yield pb.LogChunk(offset=end - len(data))
        while True:
            if data:
                yield pb.LogChunk(data=data, offset=end, truncated=truncated)
            await asyncio.sleep(FOLLOW_PERIOD)
            data, end, truncated = log.read(end, time.time())

    # -- commands -------------------------------------------------------------------------------

    async def Start(self, request: pb.ProcessCommand, context: Context) -> pb.CommandResponse:
        procs = await self._targets(context, request)
        await self._managed(context, request, "start", procs)
        outcomes = self.node.table.start(procs, time.time())
        self.node.reschedule()
        if request.wait:
            outcomes = await self._wait_started(outcomes)
        return results(outcomes)

    async def _wait_started(self, outcomes: list[Outcome]) -> list[Outcome]:
        started = [o.process for o in outcomes if o.ok]
        await self.node.settle(started, _started)
        return [o if not o.ok or o.process.state == ProcessState.RUNNING
                else Outcome(o.process, Fault.ABNORMAL_TERMINATION, o.process.namespec) for o in outcomes]

    async def Stop(self, request: pb.ProcessCommand, context: Context) -> pb.CommandResponse:
        procs = await self._targets(context, request)
        await self._managed(context, request, "stop", procs)
        outcomes = self.node.table.stop(procs, time.time())
        self.node.reschedule()
        if request.wait:
            await self.node.settle([o.process for o in outcomes if o.ok], lambda p: p.state in STOPPED_STATES)
        return results(outcomes)

    async def Restart(self, request: pb.ProcessCommand, context: Context) -> pb.CommandResponse:
        """As the agent's: every target stopped (and waited for), then each started."""
        procs = await self._targets(context, request)
        node = self.node
        running = [p for p in procs if p.state in RUNNING_STATES]
        stopped = {o.process: o for o in node.table.stop(running, time.time())}
        node.reschedule()
        await node.settle(procs, lambda p: p.state in STOPPED_STATES)
        failed = {p: o for p, o in stopped.items() if not o.ok}
        outcomes = node.table.start([p for p in procs if p not in failed], time.time())
        node.reschedule()
        if request.wait:
            outcomes = await self._wait_started(outcomes)
        by_process = {o.process: o for o in [*outcomes, *failed.values()]}
        return results([by_process[p] for p in procs])

    async def Signal(self, request: pb.SignalCommand, context: Context) -> pb.CommandResponse:
        procs = await self._targets(context, request)
        try:
            number = signal_number(request.signal)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"BAD_SIGNAL: {exc}")
        outcomes = self.node.table.signal(procs, number, time.time())
        self.node.reschedule()
        return results(outcomes)

    async def ApplyConfig(self, request: pb.ApplyConfigRequest, context: Context) -> pb.ApplyConfigResponse:
        """Parsed whole by the agent's parser first; then removed and changed groups are
        stopped and dropped, changed and new ones added and autostarted (the agent's order)."""
        if not request.revision and not request.dry_run:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a revision id is required")
        node = self.node
        refusal = apply_refusal(node.name, self.controllers, cluster_id=request.cluster_id, force=request.force,
                                dry_run=request.dry_run, role="")
        if refusal:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)
        async with node.apply_lock:
            try:
                groups = await asyncio.to_thread(self.configs.with_revision, request.revision, request.config_text)
            except ConfigError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            current = [g.config for g in node.table.groups.values()]
            added, changed, removed = diff_groups(groups, current)
            if not request.dry_run:
                await self._update(groups, added, changed, removed)
                own = {g.name for g in node.own_groups}
                node.fleet_groups = tuple(g for g in groups if g.name not in own)
                node.applied.revision, node.applied.text = request.revision, request.config_text
                node.applied.cluster_id = request.cluster_id or node.applied.cluster_id
                node.applied.local = not request.cluster_id
                node.applied.sections = sorted(g.name for g in node.fleet_groups)
                if node.heartbeat is not None:
                    node.heartbeat.poke(request.revision)  # the controller waits to see it applied
        return pb.ApplyConfigResponse(revision=request.revision, added=added, changed=changed, removed=removed,
                                      applied=not request.dry_run)

    async def _update(self, groups: Sequence[GroupConfig], added: list[str], changed: list[str],
                      removed: list[str]) -> None:
        node, table = self.node, self.node.table
        await node.stop_and_wait([p for name in removed + changed for p in table.groups[name].processes.values()])
        for name in removed + changed:
            table.remove_group(name)
        configs = {g.name: g for g in groups}
        for name in changed + added:
            table.add_group(configs[name], time.time())
        node.reschedule()
