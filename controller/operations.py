"""Durable fleet operations: rolling restarts and rolling config rollouts, run by the leader.

An operation is stored under `ops/<id>` with its whole plan (ordered batches of nodes) and
each node's step state, and it is saved after every step. Only the leader advances it, and
each save is a transaction that also checks the leader key still holds this controller, so
a deposed leader cannot overwrite its successor's progress. A new leader resumes every
running operation from what is stored: a node whose restart was sent but not confirmed is
recognised by its pids (recorded before the restart) and is not restarted a second time.

Batches run one after another and never overlap, so at most one batch of nodes has the group
down at a time; inside a batch the nodes act in parallel. A node is done when every process
of the group is RUNNING (with a new pid, for a restart) and has stayed so for `healthy_for`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import grpc
from google.protobuf import json_format

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb

from . import planning, records
from .configs import ConfigRejected
from .fleet import Fleet, NotFound
from .livestate import rpc_reason

log = logging.getLogger("fleetvisor.controller")

ENDED = {pb.OP_SUCCEEDED, pb.OP_FAILED, pb.OP_ABORTED}
SETTLED = {pb.STEP_DONE, pb.STEP_FAILED, pb.STEP_REVERTED, pb.STEP_SKIPPED}
DEFAULT_HEALTHY_FOR = 5.0
DEFAULT_TIMEOUT = 300.0


class StepFailed(Exception):
    """A node's step failed; the message says why, in one line."""


class Fenced(Exception):
    """The stored operation changed under us (another leader): stop driving it."""


def new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def to_bytes(op: pb.Operation) -> bytes:
    return json_format.MessageToJson(op, indent=None).encode()


def from_bytes(raw: bytes) -> pb.Operation:
    return json_format.Parse(raw, pb.Operation(), ignore_unknown_fields=True)


def steps(op: pb.Operation) -> list[pb.NodeStep]:
    return [step for batch in op.batches for step in batch.nodes]


def find_step(op: pb.Operation, node: str) -> pb.NodeStep:
    return next(s for s in steps(op) if s.node == node)


def new_operation(spec: pb.OperationSpec, nodes: list[str], author: str, message: str) -> pb.Operation:
    """A planned operation (state RUNNING, nothing done). Raises planning.PlanError."""
    size = planning.batch_size(len(nodes), spec.batch, spec.max_unavailable)
    batches = planning.plan(nodes, size, spec.canary)
    spec = _with_defaults(spec)
    now = time.time()
    return pb.Operation(
        id=new_id(), spec=spec, state=pb.OP_RUNNING, author=author, message=message, created_at=now,
        updated_at=now,
        batches=[pb.OperationBatch(nodes=[pb.NodeStep(node=n, state=pb.STEP_PENDING) for n in batch])
                 for batch in batches])


def _with_defaults(spec: pb.OperationSpec) -> pb.OperationSpec:
    filled = pb.OperationSpec()
    filled.CopyFrom(spec)
    if filled.healthy_for_seconds <= 0:
        filled.healthy_for_seconds = DEFAULT_HEALTHY_FOR
    if filled.timeout_seconds <= 0:
        filled.timeout_seconds = DEFAULT_TIMEOUT
    if filled.on_failure == pb.ON_FAILURE_UNSPECIFIED:
        filled.on_failure = pb.PAUSE
    return filled


class Operations:
    def __init__(self, fleet: Fleet, leader_identity: bytes) -> None:
        self.fleet = fleet
        self.identity = leader_identity
        self._latest: dict[str, tuple[pb.Operation, bytes]] = {}  # what this leader last wrote
        self._locks: dict[str, asyncio.Lock] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        fleet.on_change(self._wake.set)

    # -- reading (any controller) ------------------------------------------------------------

    def get(self, op_id: str) -> pb.Operation:
        raw = self.fleet.mirror.get(records.op_key(op_id))
        if raw is None:
            raise NotFound(f"no such operation: {op_id}")
        return from_bytes(raw)

    def list(self, everything: bool) -> list[pb.Operation]:
        ops = [from_bytes(raw) for _, raw in sorted(self.fleet.mirror.items(records.OPS).items())]
        return [op for op in ops if everything or op.state not in ENDED]

    # -- planning ----------------------------------------------------------------------------

    def plan_restart(self, spec: pb.OperationSpec, author: str, message: str) -> pb.Operation:
        if not spec.group:
            raise ConfigRejected("say which process group to restart")
        members = self.fleet.members()
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
        try:
            return new_operation(spec, nodes, author, message)
        except planning.PlanError as exc:
            raise ConfigRejected(str(exc)) from None

    def rollout_planner(self, spec: pb.OperationSpec, name: str, author: str, message: str):
        """For Fleet.push: the rollout operation, once the targets and revisions are known."""
        def plan(targets: list[str], revision: int, previous: int) -> pb.Operation:
            full = pb.OperationSpec()
            full.CopyFrom(spec)
            full.kind = pb.CONFIG_ROLLOUT
            full.config_name = name
            full.config_revision = revision
            full.previous_revision = previous
            try:
                return new_operation(full, targets, author, message)
            except planning.PlanError as exc:
                raise ConfigRejected(str(exc)) from None
        return plan

    # -- writes (the leader) -----------------------------------------------------------------

    async def create(self, op: pb.Operation) -> pb.Operation:
        tx = self.fleet.client.transactions
        key = self.fleet.key(records.op_key(op.id))
        raw = to_bytes(op)
        ok, responses = await self.fleet.client.transaction(
            compare=[tx.create(key) == 0, self._fence()], success=[tx.put(key, raw)], failure=[])
        if not ok:
            raise ConfigRejected("this controller stopped leading; try again")
        self._latest[op.id] = (op, raw)
        await self.fleet.mirror.wait_revision(responses[0].response_put.header.revision, timeout=10)
        return op

    def _fence(self):
        tx = self.fleet.client.transactions
        return tx.value(self.fleet.key(records.LEADER)) == self.identity

    async def update(self, op_id: str, change: Callable[[pb.Operation], None]) -> pb.Operation:
        """Apply `change` to the operation and store it, in order with every other change."""
        lock = self._locks.setdefault(op_id, asyncio.Lock())
        async with lock:
            if op_id in self._latest:
                current, raw = self._latest[op_id]
            else:
                current = self.get(op_id)
                raw = self.fleet.mirror.get(records.op_key(op_id))
            op = pb.Operation()
            op.CopyFrom(current)
            change(op)
            op.updated_at = time.time()
            op.controller_id = self.fleet.id
            new_raw = to_bytes(op)
            tx = self.fleet.client.transactions
            key = self.fleet.key(records.op_key(op_id))
            ok, responses = await self.fleet.client.transaction(
                compare=[tx.value(key) == raw, self._fence()], success=[tx.put(key, new_raw)], failure=[])
            if not ok:
                self._latest.pop(op_id, None)
                raise Fenced(f"operation {op_id} changed elsewhere, or this controller no longer leads")
            self._latest[op_id] = (op, new_raw)
            self._wake.set()
            return op

    async def pause(self, op_id: str, reason: str) -> pb.Operation:
        def change(op: pb.Operation) -> None:
            if op.state != pb.OP_RUNNING:
                raise ConfigRejected(f"operation {op_id} is {pb.OperationState.Name(op.state)[3:].lower()}, "
                                     "not running")
            op.state = pb.OP_PAUSED
            op.reason = reason or "paused by an operator"
        return await self.update(self._exists(op_id), change)

    async def resume(self, op_id: str) -> pb.Operation:
        def change(op: pb.Operation) -> None:
            if op.state != pb.OP_PAUSED:
                raise ConfigRejected(f"operation {op_id} is {pb.OperationState.Name(op.state)[3:].lower()}, "
                                     "not paused")
            op.state = pb.OP_RUNNING
            op.reason = ""
            if op.current_batch < len(op.batches):  # retry what failed in the batch it stopped in
                for step in op.batches[op.current_batch].nodes:
                    if step.state in (pb.STEP_FAILED, pb.STEP_REVERTED):
                        step.state = pb.STEP_PENDING
                        step.error = ""
        return await self.update(self._exists(op_id), change)

    async def abort(self, op_id: str, reason: str) -> pb.Operation:
        def change(op: pb.Operation) -> None:
            if op.state in ENDED:
                raise ConfigRejected(f"operation {op_id} has already ended "
                                     f"({pb.OperationState.Name(op.state)[3:].lower()})")
            op.state = pb.OP_ABORTED
            op.reason = reason or "aborted by an operator"
            _skip_pending(op)
        return await self.update(self._exists(op_id), change)

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
                    if op.state == pb.OP_RUNNING and op.id not in self._runners:
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

    def _now(self, op_id: str) -> pb.Operation:
        return self._latest[op_id][0] if op_id in self._latest else self.get(op_id)

    async def _advance(self, op_id: str) -> None:
        while True:
            op = self._now(op_id)
            if op.state != pb.OP_RUNNING:
                return
            if op.current_batch >= len(op.batches):
                await self._finish(op_id)
                return
            batch = op.batches[op.current_batch]
            todo = [s.node for s in batch.nodes if s.state not in SETTLED]
            if todo:
                log.info("operation %s: batch %d of %d: %s", op_id, op.current_batch + 1, len(op.batches),
                         ", ".join(todo))
                await asyncio.gather(*(self._step(op_id, node) for node in todo))
                continue
            await self.update(op_id, _next_batch)

    async def _finish(self, op_id: str) -> None:
        op = self._now(op_id)
        if op.spec.kind == pb.CONFIG_ROLLOUT:
            await self.fleet.update_rollout(op.spec.config_name, op_id, lambda done: None)

        def change(op: pb.Operation) -> None:
            op.state = pb.OP_SUCCEEDED
        await self.update(op_id, change)
        log.info("operation %s succeeded", op_id)

    async def _step(self, op_id: str, node: str) -> None:
        op = self._now(op_id)
        try:
            if op.spec.kind == pb.CONFIG_ROLLOUT:
                await self._rollout_step(op_id, node)
            else:
                await self._restart_step(op_id, node)
        except StepFailed as exc:
            await self._failed(op_id, node, str(exc))

    def _set_step(self, node: str, **fields: object) -> Callable[[pb.Operation], None]:
        def change(op: pb.Operation) -> None:
            step = find_step(op, node)
            for name, value in fields.items():
                if name == "pids_before":
                    del step.pids_before[:]
                    step.pids_before.extend(value)  # type: ignore[arg-type]
                else:
                    setattr(step, name, value)
        return change

    def _still_running(self, op_id: str) -> bool:
        return self._now(op_id).state == pb.OP_RUNNING

    # -- a rolling restart on one node ---------------------------------------------------------

    async def _restart_step(self, op_id: str, node: str) -> None:
        op = self._now(op_id)
        group = op.spec.group
        step = find_step(op, node)
        deadline = time.monotonic() + op.spec.timeout_seconds
        link = self.fleet.links.get(node)
        if link is None or not link.reachable:
            raise StepFailed(f"not reachable: {link.error if link else 'no address known'}")
        current = {p.pid for p in link.processes.values() if p.group == group and p.pid}
        if step.state == pb.STEP_PENDING:
            await self.update(op_id, self._set_step(node, state=pb.STEP_ACTING, started_at=time.time(),
                                                    pids_before=sorted(current), error=""))
            send = True
        else:  # taken over from another leader: restart only if it never happened
            send = step.state == pb.STEP_ACTING and bool(current) and current <= set(step.pids_before)
            if not send:
                log.info("operation %s: %s was already restarted, not restarting it again", op_id, node)
        pids_before = set(find_step(self._now(op_id), node).pids_before)
        if send:
            try:
                answer = await link.stub.Restart(apb.ProcessCommand(names=[f"{group}:*"], wait=True),
                                                 timeout=max(1.0, deadline - time.monotonic()))
            except grpc.aio.AioRpcError as exc:
                raise StepFailed(f"restart failed: {rpc_reason(exc)}") from None
            bad = [f"{r.name}: {r.description}" for r in answer.results if not r.ok]
            if bad:
                raise StepFailed(f"restart failed: {'; '.join(bad)}")
        if not self._still_running(op_id):
            return
        await self.update(op_id, self._set_step(node, state=pb.STEP_WAITING))
        await self._wait_healthy(op_id, node, {group}, pids_before, deadline)

    async def _wait_healthy(self, op_id: str, node: str, groups: set[str], pids_before: set[int],
                            deadline: float) -> None:
        """Until every process of `groups` on `node` has been RUNNING for healthy_for."""
        spec = self._now(op_id).spec
        since: float | None = None
        while self._still_running(op_id):
            link = self.fleet.links.get(node)
            now = time.monotonic()
            if link is not None and link.reachable:
                look = planning.health(link.processes.values(), groups, pids_before)
                if look.failure:
                    raise StepFailed(look.failure)
            else:
                look = planning.Health(False, "")
            since = (since or now) if look.all_running else None
            if since is not None and now - since >= spec.healthy_for_seconds:
                await self.update(op_id, self._set_step(node, state=pb.STEP_DONE, healthy_at=time.time() -
                                                        (now - since), done_at=time.time()))
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
        wanted = f"{spec.config_name}@{spec.config_revision}"
        deadline = time.monotonic() + spec.timeout_seconds
        if find_step(op, node).state == pb.STEP_PENDING:
            await self.update(op_id, self._set_step(node, state=pb.STEP_ACTING, started_at=time.time(), error=""))
        await self.fleet.update_rollout(spec.config_name, op_id, lambda done: [*done, node])
        # the reconciler pushes the node's new desired revision; wait for it to land
        while wanted not in self.fleet.applied_revision(node).split(","):
            if not self._still_running(op_id):
                return
            pushed = self.fleet.reconcile_record(node)
            if pushed.last_error and wanted in pushed.desired.split(","):
                raise StepFailed(f"not applied: {pushed.last_error}")
            if time.monotonic() >= deadline:
                raise StepFailed(f"{wanted} not applied after {spec.timeout_seconds:g}s")
            await self.fleet.wait_change(max(0.01, deadline - time.monotonic()))
        await self.update(op_id, self._set_step(node, state=pb.STEP_WAITING))
        text = self.fleet.revision(spec.config_name, spec.config_revision)[1].text
        await self._wait_healthy(op_id, node, planning.groups_of(text), set(), deadline)

    # -- failures ------------------------------------------------------------------------------

    async def _failed(self, op_id: str, node: str, error: str) -> None:
        op = self._now(op_id)
        reverted = op.spec.kind == pb.CONFIG_ROLLOUT and op.spec.auto_revert
        if reverted:
            await self.fleet.update_rollout(op.spec.config_name, op_id,
                                            lambda done: [n for n in done if n != node])
        log.warning("operation %s: %s failed: %s%s", op_id, node, error, " (reverted)" if reverted else "")

        def change(op: pb.Operation) -> None:
            step = find_step(op, node)
            step.state = pb.STEP_REVERTED if reverted else pb.STEP_FAILED
            step.error = error
            step.done_at = time.time()
            if op.state != pb.OP_RUNNING:
                return
            if op.spec.on_failure == pb.ABORT:
                op.state = pb.OP_FAILED
                op.reason = f"{node}: {error}"
                _skip_pending(op)
            elif op.spec.on_failure != pb.CONTINUE:
                op.state = pb.OP_PAUSED
                op.reason = f"{node}: {error}"
        await self.update(op_id, change)


def _next_batch(op: pb.Operation) -> None:
    op.current_batch += 1
    if op.spec.canary and op.current_batch == 1 and op.current_batch < len(op.batches):
        nodes = ", ".join(s.node for s in op.batches[0].nodes)
        op.state = pb.OP_PAUSED
        op.reason = f"canary on {nodes} is healthy: resume to promote, or abort"


def _skip_pending(op: pb.Operation) -> None:
    for step in steps(op):
        if step.state == pb.STEP_PENDING:
            step.state = pb.STEP_SKIPPED
