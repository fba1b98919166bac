"""Durable fleet operations: rolling restarts, rolling config rollouts and rolling agent
upgrades, run by the leader.

An operation is stored under `ops/<id>` with its whole plan (ordered batches of nodes) and
each node's step state (opmodel.py), and it is saved after every step. Only the leader
advances it, and each save is a transaction that also checks the leader key still holds this
controller, so a deposed leader cannot overwrite its successor's progress. A new leader
resumes every running operation from what is stored: a node whose restart was sent but not
confirmed is recognised by its pids (recorded before the restart) and is not restarted a
second time.

Batches run one after another and never overlap, so at most one batch of nodes has the group
down at a time; inside a batch the nodes act in parallel. A node is done when every process
of the group is RUNNING (with a new pid, for a restart) and has stayed so for `healthy_for`.
How the stored state changes is transitions.py's; this engine watches the fleet, turns what it
sees into events, and carries out the actions.

An agent upgrade re-execs each node's agent into the installed one (AgentService.Reexec): the
agent as it was (version, pid, run, every process's pid and state) and the version it must come
back with are stored before the re-exec is sent; a leader that takes over a step whose re-exec
may have gone out sends it again (a second re-exec keeps every process, as the first did). The
node is done when the agent answers again and upgradegate.py's gate has held for `healthy_for`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from . import opmodel, planning, records, transitions, upgradegate
from .backoff import Backoff
from .configstore import RolloutPlanner
from .errors import Conflict, InvalidArgument, NotFound, NotLeader, Unavailable
from .fleet import Fleet
from .livestate import NodeLink
from .mirror import Change
from .opmodel import AgentMark, Kind, Operation, OpState, Spec, StepState
from .processes import AgentCallFailed, ProcessView
from .store import Put
from .transitions import EndRollout, Event, RevertNode, WithdrawRollout

log = logging.getLogger("fleetvisor.controller")


class StepFailed(Exception):
    """A node's step failed; the message says why, in one line."""


class Fenced(Conflict):
    """The stored operation changed under us (another leader): stop driving it."""


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def new_operation(spec: Spec, nodes: list[str], author: str, message: str, *, now: float, op_id: str) -> Operation:
    """A planned operation (state RUNNING, nothing done). Raises planning.PlanError."""
    size = planning.batch_size(len(nodes), spec.batch, spec.max_unavailable)
    batches = planning.plan(nodes, size, spec.canary)
    return Operation(id=op_id, spec=spec.with_defaults(), state=OpState.RUNNING, author=author, message=message,
                     created_at=now, updated_at=now,
                     batches=[opmodel.Batch([opmodel.Step(n) for n in batch]) for batch in batches])


class Operations:
    def __init__(self, fleet: Fleet, leader_identity: bytes) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.identity = leader_identity
        self._latest: dict[str, tuple[Operation, bytes]] = {}  # what this leader last wrote
        self._locks: dict[str, asyncio.Lock] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._decoded: dict[str, tuple[bytes, Operation]] = {}  # see _decode()
        self.store.mirror.subscribe(self._on_mirror)

    def _on_mirror(self, changes: list[Change]) -> None:
        """An operation stored or changed: run() looks for new ones (not on every fleet change:
        during a push to thousands of nodes that is thousands a second)."""
        if any(change.key.startswith(records.OPS) for change in changes):
            self._wake.set()

    # -- reading (any controller) ------------------------------------------------------------

    def get(self, op_id: str) -> Operation:
        key = records.op_key(op_id)
        raw = self.store.get(key)
        if raw is None:
            raise NotFound(f"no such operation: {op_id}")
        return self._decode(key, raw)

    def list(self, everything: bool) -> list[Operation]:
        """The operations this controller can read; one it cannot (from a newer controller, or
        corrupt) is left out (unreadable.py says so in the log)."""
        ops = []
        stored = self.store.items(records.OPS)
        for key, raw in sorted(stored.items()):
            try:
                ops.append(self._decode(key, raw))
            except Unavailable:
                pass
        for key in self._decoded.keys() - stored.keys():  # records deleted since
            del self._decoded[key]
        return [op for op in ops if everything or op.state not in opmodel.ENDED]

    def _decode(self, key: str, raw: bytes) -> Operation:
        """The operation of a record, decoded once per value: every status summary and metrics
        scrape reads all of them. What this returns is shared, and read only (transitions.apply
        changes a copy)."""
        hit = self._decoded.get(key)
        if hit is not None and hit[0] == raw:
            return hit[1]
        op = opmodel.decode(raw, key)
        self._decoded[key] = (raw, op)
        return op

    # -- planning ----------------------------------------------------------------------------

    def plan_restart(self, spec: Spec, author: str, message: str) -> Operation:
        if not spec.group:
            raise InvalidArgument("say which process group to restart")
        members = self.fleet.membership.members()
        wanted = spec.selector
        unknown = [n for n in wanted.nodes if n not in members]
        if unknown:
            raise NotFound(f"no such node: {', '.join(unknown)}")
        nodes = []
        for name, member in members.items():
            if wanted.nodes and name not in wanted.nodes:
                continue
            if not records.labels_match(member.labels, dict(wanted.labels)):
                continue
            link = self.fleet.links.get(name)
            if link is not None and any(p.group == spec.group for p in link.processes.values()):
                nodes.append(name)
        if not nodes:
            raise NotFound(f"no node runs a group named {spec.group}")
        return new_operation(replace(spec, kind=Kind.ROLLING_RESTART), nodes, author, message,
                             now=time.time(), op_id=new_id())

    def plan_upgrade(self, spec: Spec, author: str, message: str) -> Operation:
        """Every node that is up of those the selector's globs and labels pick (every node
        without either)."""
        membership = self.fleet.membership
        members = {name: m.labels for name, m in membership.members().items()}
        down = {name for name in members if not membership.is_up(name)}
        nodes = planning.select_nodes(members, spec.selector.nodes, spec.selector.labels, down)
        picked = records.Selector(tuple(nodes), dict(spec.selector.labels))
        return new_operation(replace(spec, kind=Kind.AGENT_UPGRADE, group="", selector=picked), nodes, author,
                             message, now=time.time(), op_id=new_id())

    def gates(self, op: Operation) -> dict[str, str]:
        """A rolling restart's gate for its group, from what its nodes run now."""
        processes = [p for step in op.steps() if (link := self.fleet.links.get(step.node)) is not None
                     for p in link.processes.values()]
        return {op.spec.group: planning.gate(processes, op.spec.group)}

    def rollout_planner(self, spec: Spec, name: str, author: str, message: str) -> RolloutPlanner:
        """For ConfigStore.push: the rollout operation, once the targets and revisions are known."""
        def plan(targets: list[str], revision: int, previous: int) -> Operation:
            full = replace(spec, kind=Kind.CONFIG_ROLLOUT, config_name=name, config_revision=revision,
                           previous_revision=previous)
            return new_operation(full, targets, author, message, now=time.time(), op_id=new_id())
        return plan

    # -- writes (the leader) -----------------------------------------------------------------

    def _fence(self) -> dict[str, bytes | None]:
        return {records.LEADER: self.identity}

    async def create(self, op: Operation) -> Operation:
        key = records.op_key(op.id)
        raw = opmodel.encode(op)
        if not await self.store.compare_and_put([Put(key, raw)], {key: None, **self._fence()}):
            raise NotLeader("this controller stopped leading; try again")
        self._latest[op.id] = (op, raw)
        return op

    async def update(self, op_id: str, event: Event) -> Operation:
        """Apply `event` to the operation, carry out what it calls for, and store the result, in
        order with every other change."""
        lock = self._locks.setdefault(op_id, asyncio.Lock())
        async with lock:
            raw: bytes | None
            if op_id in self._latest:
                current, raw = self._latest[op_id]
            else:
                current = self.get(op_id)
                raw = self.store.get(records.op_key(op_id))
            op, actions = transitions.apply(current, event)
            for action in actions:
                await self._carry_out(op, action)
            op.updated_at = time.time()
            op.controller_id = self.fleet.id
            new_raw = opmodel.encode(op)
            key = records.op_key(op_id)
            if not await self.store.compare_and_put([Put(key, new_raw)], {key: raw, **self._fence()},
                                                    visible=False):
                self._latest.pop(op_id, None)
                raise Fenced(f"operation {op_id} changed elsewhere, or this controller no longer leads")
            self._latest[op_id] = (op, new_raw)
            self._wake.set()
            return op

    async def _carry_out(self, op: Operation, action: transitions.Action) -> None:
        configs = self.fleet.configs
        if isinstance(action, RevertNode):
            await configs.update_rollout(op.spec.config_name, op.id, lambda done: [n for n in done if n != action.node])
        elif isinstance(action, EndRollout):
            await configs.update_rollout(op.spec.config_name, op.id, lambda done: None)
        elif isinstance(action, WithdrawRollout):
            await configs.withdraw_rollout(op.spec.config_name, op.id, action.why, self.fleet.id)

    async def pause(self, op_id: str, reason: str) -> Operation:
        return await self.update(self._exists(op_id), transitions.Pause(reason))

    async def resume(self, op_id: str) -> Operation:
        return await self.update(self._exists(op_id), transitions.Resume())

    async def abort(self, op_id: str, reason: str) -> Operation:
        return await self.update(self._exists(op_id), transitions.Abort(reason))

    def _exists(self, op_id: str) -> str:
        self.get(op_id)
        return op_id

    # -- the leader's duty -------------------------------------------------------------------

    async def run(self) -> None:
        """Drive every running operation; pick up new ones as they are stored."""
        self._latest.clear()  # whatever a previous term wrote, etcd is the truth now
        try:
            while True:
                self._wake.clear()
                for op in self.list(everything=False):
                    if op.state == OpState.RUNNING and op.id not in self._runners:
                        self._runners[op.id] = asyncio.create_task(self._drive(op.id), name=f"operation {op.id}")
                await self._wake.wait()
        finally:
            for task in self._runners.values():
                task.cancel()
            await asyncio.gather(*self._runners.values(), return_exceptions=True)
            self._runners.clear()

    async def _drive(self, op_id: str) -> None:
        try:
            await self._advance(op_id)
        except Fenced as exc:
            log.warning("%s", exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not take the leader down; the operation stays as stored
            log.exception("operation %s stopped by an internal error", op_id)
        finally:
            self._runners.pop(op_id, None)
            self._wake.set()

    def _now(self, op_id: str) -> Operation:
        return self._latest[op_id][0] if op_id in self._latest else self.get(op_id)

    async def _advance(self, op_id: str) -> None:
        while True:
            op = self._now(op_id)
            if op.state != OpState.RUNNING:
                return
            if op.current_batch >= len(op.batches):
                await self.update(op_id, transitions.Finished())
                log.info("operation %s succeeded", op_id)
                return
            todo = transitions.pending_in_batch(op)
            if todo:
                log.info("operation %s: batch %d of %d: %s", op_id, op.current_batch + 1, len(op.batches),
                         ", ".join(todo))
                await asyncio.gather(*(self._step(op_id, node) for node in todo))
                continue
            await self.update(op_id, transitions.BatchSettled())

    async def _step(self, op_id: str, node: str) -> None:
        op = self._now(op_id)
        try:
            if op.spec.kind == Kind.CONFIG_ROLLOUT:
                await self._rollout_step(op_id, node)
            elif op.spec.kind == Kind.AGENT_UPGRADE:
                await self._upgrade_step(op_id, node)
            else:
                await self._restart_step(op_id, node)
        except StepFailed as exc:
            await self._failed(op_id, node, str(exc))

    def _still_running(self, op_id: str) -> bool:
        return self._now(op_id).state == OpState.RUNNING

    # -- a rolling restart on one node ---------------------------------------------------------

    async def _restart_step(self, op_id: str, node: str) -> None:
        op = self._now(op_id)
        group = op.spec.group
        step = op.step(node)
        deadline = time.monotonic() + op.spec.timeout_seconds
        link = self._reachable(node)
        # Whether to restart, and the pids a restart must replace, are decided on the agent's own
        # word: the streamed view may lag (a node followed through a controller just killed), and
        # a step that took pids from it could judge a restart done that never happened.
        try:
            listed = await link.ask_processes([f"{group}:*"], _left(deadline))
        except AgentCallFailed as exc:
            raise StepFailed(f"cannot list {group}: {exc}") from None
        if not self._still_running(op_id):  # paused or aborted meanwhile
            return
        current = {p.pid for p in listed if p.pid}
        send = transitions.restart_needed(step, current)
        if step.state == StepState.PENDING:
            # a retry whose restart already happened keeps the pids from before it, to judge the new ones by
            before = current if send else set(step.pids_before)
            await self.update(op_id, transitions.StepStarted(node, time.time(), tuple(sorted(before))))
        if not send:  # taken over from another leader mid-step, or retried after a lost answer
            log.info("operation %s: %s was already restarted, not restarting it again", op_id, node)
        pids_before = set(self._now(op_id).step(node).pids_before)
        if send:
            await self._command(link, "restart", [f"{group}:*"], deadline)
        if not self._still_running(op_id):
            return
        await self.update(op_id, transitions.StepWaiting(node))
        await self._wait_healthy(op_id, node, _group_health({group}, pids_before), deadline)

    def _reachable(self, node: str) -> NodeLink:
        link = self.fleet.links.get(node)
        if link is None or not link.reachable:
            raise StepFailed(f"not reachable: {link.error if link else 'no address known'}")
        return link

    async def _wait_healthy(self, op_id: str, node: str, judge: Callable[[NodeLink], planning.Health],
                            deadline: float) -> None:
        """Until `judge` has found the node healthy (for a restart or a rollout: every process of
        its groups RUNNING) for healthy_for."""
        spec = self._now(op_id).spec
        since: float | None = None
        while self._still_running(op_id):
            link = self.fleet.links.get(node)
            now = time.monotonic()
            if link is not None and link.reachable:
                look = judge(link)
                if look.failure:
                    raise StepFailed(look.failure)
            else:
                look = planning.Health(False, "")
            since = (since or now) if look.all_running else None
            if since is not None and now - since >= spec.healthy_for_seconds:
                await self.update(op_id, transitions.StepHealthy(node, time.time() - (now - since), time.time()))
                return
            if now >= deadline:
                why = "unreachable" if link is None or not link.reachable else "not healthy"
                raise StepFailed(f"{why} after {spec.timeout_seconds:g}s")
            wake = min(deadline, since + spec.healthy_for_seconds if since is not None else deadline)
            await self.fleet.wait_change(max(0.01, wake - now))

    # -- a rollout on one node -------------------------------------------------------------------

    async def _rollout_step(self, op_id: str, node: str) -> None:
        op = self._now(op_id)
        spec = op.spec
        configs = self.fleet.configs
        wanted = f"{spec.config_name}@{spec.config_revision}"
        deadline = time.monotonic() + spec.timeout_seconds
        if op.step(node).state == StepState.PENDING:
            await self.update(op_id, transitions.StepStarted(node, time.time()))
        await configs.update_rollout(spec.config_name, op_id, lambda done: [*done, node])
        # the reconciler pushes the node's new desired revision; wait for it to land
        while wanted not in self.fleet.membership.applied_revision(node).split(","):
            if not self._still_running(op_id):
                return
            pushed = configs.reconcile_record(node)
            if (refusal := pushed.refusal(spec.config_name)) and wanted in pushed.desired.split(","):
                raise StepFailed(f"not applied: {refusal}")
            if held := self.fleet.overrides.held(node):
                raise StepFailed(f"not pushed: {held}")
            if time.monotonic() >= deadline:
                raise StepFailed(f"{wanted} not applied after {spec.timeout_seconds:g}s")
            await self.fleet.wait_change(max(0.01, deadline - time.monotonic()))
        groups = planning.groups_of(configs.revision(spec.config_name, spec.config_revision)[1].text)
        if self._now(op_id).step(node).retries:
            await self._start_fatal(node, groups, deadline)
        await self.update(op_id, transitions.StepWaiting(node))
        await self._wait_healthy(op_id, node, _group_health(groups, set()), deadline)

    async def _start_fatal(self, node: str, groups: set[str], deadline: float) -> None:
        """A retried step: the revision may already be applied, so applying it restarted nothing;
        start what gave up (FATAL) for the operator's retry to mean something."""
        link = self._reachable(node)
        fatal = planning.gave_up(link.processes.values(), groups)
        if not fatal:
            return
        log.info("operation retry: starting %s on %s", ", ".join(fatal), node)
        await self._command(link, "start", fatal, deadline)

    async def _command(self, link: NodeLink, action: str, names: Sequence[str], deadline: float) -> None:
        """`action` on `names` of a node, waited for; StepFailed with what went wrong."""
        try:
            results = await link.command(action, list(names), wait=True, timeout=max(1.0, deadline - time.monotonic()),
                                         cluster_id=self.fleet.cluster_id)
        except AgentCallFailed as exc:
            raise StepFailed(f"{action} failed: {exc}") from None
        bad = [f"{r.name}: {r.description}" for r in results if not r.ok]
        if bad:
            raise StepFailed(f"{action} failed: {'; '.join(bad)}")

    # -- an agent upgrade on one node ----------------------------------------------------------------

    async def _upgrade_step(self, op_id: str, node: str) -> None:
        spec = self._now(op_id).spec
        deadline = time.monotonic() + spec.timeout_seconds
        link = self._reachable(node)
        if self._now(op_id).step(node).state == StepState.PENDING:
            await self.update(op_id, transitions.StepStarted(node, time.time(),
                                                             agent=await self._mark_agent(link, spec, deadline)))
        if not self._still_running(op_id):  # paused or aborted meanwhile: the re-exec waits for a resume
            return
        if self._now(op_id).step(node).state == StepState.ACTING:
            sessions = link.sessions
            try:
                await link.reexec(dry_run=False, timeout=_left(deadline))
            except AgentCallFailed as exc:
                if exc.refused:
                    raise StepFailed(f"re-exec failed: {exc}") from None
                # unavailable: the answer may have been lost with the handover; the gate tells
            if not self._still_running(op_id):
                return
            await self.update(op_id, transitions.StepWaiting(node))
            await self._wait_handover(node, link, sessions, deadline)
        recorded = self._now(op_id).step(node).agent
        if recorded is None:  # a record from a leader that did not store it: nothing to judge by
            raise StepFailed("the step has no record of the agent before its re-exec; resume to retry it")
        version, pid, processes = await self._ask_until(node, deadline)
        seen = upgradegate.AgentSeen(version, pid, self._reachable(node).run_id, upgradegate.held(processes))
        if failure := upgradegate.judge(recorded, seen):
            raise StepFailed(failure)
        await self.update(op_id, transitions.AgentBack(node, version))
        await self._wait_reported(node, version, deadline)
        await self._wait_healthy(op_id, node, _agent_health(recorded), deadline)

    async def _mark_agent(self, link: NodeLink, spec: Spec, deadline: float) -> AgentMark:
        """The agent as it is, and the version it must come back with (the dry run's, unless the
        operator expects one); StepFailed when the agent refuses the dry run or names another."""
        try:
            version, pid, processes = await link.ask_info(_left(deadline))
        except AgentCallFailed as exc:
            raise StepFailed(f"cannot read the agent: {exc}") from None
        try:
            probed = await link.reexec(dry_run=True, timeout=_left(deadline))
            expected = upgradegate.expected_version(spec.expect_version, probed.agent_version)
        except AgentCallFailed as exc:
            raise StepFailed(str(exc) if exc.refused else f"re-exec dry run: {exc}") from None
        except upgradegate.VersionRefused as exc:
            raise StepFailed(str(exc)) from None
        before = upgradegate.AgentSeen(version, pid, link.run_id, upgradegate.held(processes))
        return upgradegate.mark(before, expected)

    async def _wait_handover(self, node: str, link: NodeLink, sessions: int, deadline: float) -> None:
        """Until the node's event stream broke (the old agent exec'd) and came back: the agent is
        UNAVAILABLE for a moment in between, which is expected."""
        while True:
            now = self.fleet.links.get(node)
            if now is not None and now.reachable and (now is not link or now.sessions > sessions):
                return
            if time.monotonic() >= deadline:
                why = link.error or "its event stream never broke, so the old agent still runs"
                raise StepFailed(f"the agent did not come back after its re-exec: {why}")
            await self.fleet.wait_change(_left(deadline))

    async def _ask_until(self, node: str, deadline: float) -> tuple[str, int, Sequence[ProcessView]]:
        """GetInfo and ListProcesses, retried with capped backoff until the agent answers."""
        backoff = Backoff(initial=0.05, cap=1.0)
        while True:
            try:
                return await self._reachable(node).ask_info(_left(deadline))
            except (AgentCallFailed, StepFailed) as exc:
                if time.monotonic() + backoff.current >= deadline:
                    raise StepFailed(f"the agent did not answer after its re-exec: {exc}") from None
            await asyncio.sleep(backoff.next())

    async def _wait_reported(self, node: str, version: str, deadline: float) -> None:
        """Until the node's record (what status and the node list show) has the agent's new
        version: its next heartbeat brings it."""
        while (member := self.fleet.membership.member(node)) is not None and member.agent_version != version:
            if time.monotonic() >= deadline:
                raise StepFailed(f"the controller still reports agent version {member.agent_version}, "
                                 f"the agent says {version}")
            await self.fleet.wait_change(_left(deadline))

    # -- failures ------------------------------------------------------------------------------

    async def _failed(self, op_id: str, node: str, error: str) -> None:
        op = await self.update(op_id, transitions.StepFailed(node, error, time.time()))
        reverted = op.step(node).state == StepState.REVERTED
        log.warning("operation %s: %s failed: %s%s", op_id, node, error, " (reverted)" if reverted else "")


def _left(deadline: float) -> float:
    """Seconds to a monotonic deadline, never less than a short call's worth."""
    return max(0.05, deadline - time.monotonic())


def _group_health(groups: set[str], pids_before: set[int]) -> Callable[[NodeLink], planning.Health]:
    return lambda link: planning.health(link.processes.values(), groups, pids_before)


def _agent_health(recorded: AgentMark) -> Callable[[NodeLink], planning.Health]:
    """The upgrade gate on the live view: the agent as streamed, its version as last asked."""
    def judge(link: NodeLink) -> planning.Health:
        version = link.info.agent_version if link.info is not None else ""
        pid = link.info.pid if link.info is not None else 0
        return upgradegate.health(recorded, upgradegate.AgentSeen(version, pid, link.run_id,
                                                                  upgradegate.held(link.processes.values())))
    return judge
