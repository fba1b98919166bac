"""How an operation changes: a pure function of (operation, event) -> (operation, actions).

The engine (operations.py) observes the fleet, turns what it sees and what operators ask into
events, carries out the actions this returns, then stores the new operation. Nothing here
does I/O or reads a clock: times come in the events.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from .errors import InvalidArgument
from .opmodel import ENDED, SETTLED, AgentMark, Kind, OnFailure, Operation, OpState, Step, StepState

# -- events ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pause:
    reason: str = ""


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Abort:
    reason: str = ""


@dataclass(frozen=True)
class StepStarted:
    node: str
    at: float
    pids_before: tuple[int, ...] = ()
    agent: AgentMark | None = None  # AGENT_UPGRADE: the agent as it was, and the version it must come back with


@dataclass(frozen=True)
class StepWaiting:
    node: str


@dataclass(frozen=True)
class AgentBack:
    """AGENT_UPGRADE: the agent answers again, reporting `version`."""

    node: str
    version: str


@dataclass(frozen=True)
class StepHealthy:
    node: str
    healthy_at: float
    at: float


@dataclass(frozen=True)
class StepFailed:
    node: str
    error: str
    at: float


@dataclass(frozen=True)
class BatchSettled:
    """Every node of the current batch has settled: go on to the next."""


@dataclass(frozen=True)
class Finished:
    """Every batch is done."""


Event = (Pause | Resume | Abort | StepStarted | StepWaiting | AgentBack | StepHealthy | StepFailed | BatchSettled
         | Finished)


# -- actions (done by the engine before it stores the new state) -------------------------------------

@dataclass(frozen=True)
class RevertNode:
    """A rollout: put the node back on the previous revision."""

    node: str


@dataclass(frozen=True)
class EndRollout:
    """A rollout: every node now runs the new revision."""


@dataclass(frozen=True)
class WithdrawRollout:
    """A rollout failed or was aborted: the config goes back to the revision every node ran
    before it, and the new one is marked as never rolled out."""

    why: str


Action = RevertNode | EndRollout | WithdrawRollout


def apply(op: Operation, event: Event) -> tuple[Operation, list[Action]]:
    """The operation after `event`, and what must happen for it. Raises InvalidArgument for an
    operator's request that the operation's state does not allow. `op` is left as it was."""
    op = copy.deepcopy(op)
    actions: list[Action] = []
    match event:
        case Pause(reason):
            if op.state != OpState.RUNNING:
                raise InvalidArgument(f"operation {op.id} is {op.state.word}, not running")
            op.state = OpState.PAUSED
            op.reason = reason or "paused by an operator"
        case Resume():
            if op.state != OpState.PAUSED:
                withdrawn = (f"; revision {op.spec.config_revision} of {op.spec.config_name} was withdrawn, "
                             f"push it again to retry" if _withdraws(op) else "")
                raise InvalidArgument(f"operation {op.id} is {op.state.word}, not paused{withdrawn}")
            op.state = OpState.RUNNING
            op.reason = ""
            if op.current_batch < len(op.batches):  # retry what failed in the batch it stopped in
                for step in op.batches[op.current_batch].nodes:
                    if step.state in (StepState.FAILED, StepState.REVERTED):
                        step.state = StepState.PENDING
                        step.error = ""
                        step.retries += 1
        case Abort(reason):
            if op.state in ENDED:
                raise InvalidArgument(f"operation {op.id} has already ended ({op.state.word})")
            op.state = OpState.ABORTED
            op.reason = reason or "aborted by an operator"
            _skip_pending(op)
            if op.spec.kind == Kind.CONFIG_ROLLOUT:
                actions.append(WithdrawRollout(f"operation {op.id} aborted: {op.reason}"))
        case StepStarted(node, at, pids, agent):
            step = op.step(node)
            step.state, step.started_at, step.pids_before, step.error = StepState.ACTING, at, list(pids), ""
            if agent is not None:
                step.agent = copy.deepcopy(agent)
        case StepWaiting(node):
            op.step(node).state = StepState.WAITING
        case AgentBack(node, version):
            recorded = op.step(node).agent
            if recorded is not None:
                recorded.version_after = version
        case StepHealthy(node, healthy_at, at):
            step = op.step(node)
            step.state, step.healthy_at, step.done_at = StepState.DONE, healthy_at, at
        case StepFailed(node, error, at):
            reverted = op.spec.kind == Kind.CONFIG_ROLLOUT and op.spec.auto_revert
            if reverted:
                actions.append(RevertNode(node))
            step = op.step(node)
            step.state = StepState.REVERTED if reverted else StepState.FAILED
            step.error, step.done_at = error, at
            if op.state == OpState.RUNNING and op.spec.on_failure != OnFailure.CONTINUE:
                op.state = OpState.FAILED if op.spec.on_failure == OnFailure.ABORT else OpState.PAUSED
                op.reason = f"{node}: {error}"
                if op.state == OpState.FAILED:
                    _skip_pending(op)
                    if op.spec.kind == Kind.CONFIG_ROLLOUT:
                        actions.append(WithdrawRollout(f"operation {op.id} failed: {op.reason}"))
        case BatchSettled():
            op.current_batch += 1
            if op.spec.canary and op.current_batch == 1 and op.current_batch < len(op.batches):
                nodes = ", ".join(s.node for s in op.batches[0].nodes)
                op.state = OpState.PAUSED
                op.reason = f"canary on {nodes} is healthy: resume to promote, or abort"
        case Finished():
            if op.spec.kind == Kind.CONFIG_ROLLOUT:
                actions.append(EndRollout())
            op.state = OpState.SUCCEEDED
    return op, actions


def _withdraws(op: Operation) -> bool:
    return op.spec.kind == Kind.CONFIG_ROLLOUT and op.state in (OpState.FAILED, OpState.ABORTED)


def _skip_pending(op: Operation) -> None:
    for step in op.steps():
        if step.state == StepState.PENDING:
            step.state = StepState.SKIPPED


def pending_in_batch(op: Operation) -> list[str]:
    """The nodes of the current batch that have not settled yet."""
    return [s.node for s in op.batches[op.current_batch].nodes if s.state not in SETTLED]


def restart_needed(step: Step, pids_now: set[int]) -> bool:
    """Whether a restart step must (still) send its restart. A step taken over from another
    leader mid-way sends it only if the group still runs the pids it had before. A step retried
    after it failed (resumed by an operator) skips it when its earlier restart did happen, its
    answer lost with the link: none of the pids from before runs, and new ones do. A group with
    nothing running (gave up) is restarted: that is what a retry is for."""
    if step.state == StepState.PENDING:
        restarted = step.retries > 0 and bool(step.pids_before) and bool(pids_now) \
            and not pids_now & set(step.pids_before)
        return not restarted
    return step.state == StepState.ACTING and bool(pids_now) and pids_now <= set(step.pids_before)
