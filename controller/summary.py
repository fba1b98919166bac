"""The fleet in a screenful: per-group counts and the problems that need a person (issue 18).

Pure: it takes the status the caller may see (views.FleetStatus's nodes, already cut to the
caller's read scope and the request's patterns and labels) and the operations the caller may
read, and returns values; service.py puts them on the wire. One pass over the processes and
no string formatting per process: the target is 5000 nodes x 20 processes per status tick.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from . import opmodel
from .nodepolicy import same_revision
from .processes import ProcessList, ProcessView, ProcState
from .views import NodeInfo, NodeProcesses

UNHEALTHY = "UNHEALTHY"  # RUNNING with a failing health check: a summary category, not a process state
STATES = frozenset(s.name for s in ProcState if s is not ProcState.UNSPECIFIED) | {UNHEALTHY}
PROBLEM_LIMIT = 500  # problems sent; problems_total counts them all
NODES_PER_STATE = 100  # node names sent per group state; nodes_total counts them all
FAILED_OPERATION_WINDOW = 24 * 3600.0  # a failed operation stays a problem this long (ended ones are history)
_HEALTH_UNHEALTHY = 3  # agent_pb2.UNHEALTHY; the core does not import the wire
_RUNNING = int(ProcState.RUNNING)  # a plain int compares faster than an IntEnum member, 100k times a tick
# Not RUNNING though the agent keeps trying, or gave up: problems whatever the config says.
_TROUBLE = frozenset({ProcState.FATAL, ProcState.BACKOFF, ProcState.UNKNOWN})


class Kind(IntEnum):
    """As the wire's Problem.Kind."""

    NODE_DOWN = 1
    NODE_UNREACHABLE = 2
    PROCESS = 3
    DRIFT = 4
    EDITED_BY_HAND = 5
    FOREIGN = 6
    OPERATION = 7


# Worst first: a node that is gone hides everything on it; a dead process before a stalled
# operation before configuration that is merely not as desired.
_KIND_RANK = {Kind.NODE_DOWN: 0, Kind.NODE_UNREACHABLE: 1, Kind.PROCESS: 2, Kind.OPERATION: 3, Kind.FOREIGN: 4,
              Kind.DRIFT: 5, Kind.EDITED_BY_HAND: 6}
_STATE_RANK = {"FATAL": 0, "UNKNOWN": 1, "BACKOFF": 2, "EXITED": 3, UNHEALTHY: 4, "OP_FAILED": 0, "OP_PAUSED": 1}


@dataclass(frozen=True)
class Problem:
    kind: Kind
    node: str = ""
    subject: str = ""  # the namespec, the operation id, the revision
    state: str = ""
    detail: str = ""
    since: float = 0.0  # unix time it began, when known

    def rank(self) -> tuple[int, int, str, str]:
        return _KIND_RANK[self.kind], _STATE_RANK.get(self.state, 9), self.node, self.subject


@dataclass
class StateCount:
    state: str
    count: int = 0
    nodes: set[str] = field(default_factory=set)


@dataclass
class GroupSummary:
    group: str
    total: int = 0
    running: int = 0  # RUNNING on a live node (an UNHEALTHY one too: it is counted in both)
    problems: int = 0  # processes counted as problems, or on a node that is down or unreachable
    states: dict[str, StateCount] = field(default_factory=dict)

    def count(self, state: str, node: str, count: int = 1) -> None:
        entry = self.states.get(state)
        if entry is None:
            entry = self.states[state] = StateCount(state)
        entry.count += count
        entry.nodes.add(node)


@dataclass
class FleetSummary:
    nodes: int = 0
    nodes_up: int = 0
    nodes_reachable: int = 0
    processes: int = 0
    running: int = 0
    groups: list[GroupSummary] = field(default_factory=list)  # problems first, then by name
    problems: list[Problem] = field(default_factory=list)  # the worst PROBLEM_LIMIT
    problems_total: int = 0


UNREACHABLE = "UNREACHABLE"  # the group state of processes whose node is down or unreachable: only a memory


def live(node: NodeInfo) -> bool:
    """Whether the node's process states are current (heartbeating and streaming)."""
    return node.up and node.reachable


def process_problem(proc: ProcessView) -> str:
    """The state a process is a problem in ("UNHEALTHY" for RUNNING with a failing check), or ""
    when it is not one: STOPPED is intentional, an expected exit is a finished job."""
    state = proc.state
    if state == ProcState.RUNNING:
        return UNHEALTHY if proc.health == _HEALTH_UNHEALTHY else ""
    if state in _TROUBLE or (state == ProcState.EXITED and proc.exited_unexpectedly):
        return proc.statename
    return ""


def state_of(proc: ProcessView) -> str:
    """The statename a `states` filter matches: UNHEALTHY for RUNNING with a failing check."""
    if proc.state == ProcState.RUNNING and proc.health == _HEALTH_UNHEALTHY:
        return UNHEALTHY
    return proc.statename


def node_problems(node: NodeInfo) -> list[Problem]:
    """What is wrong with the node itself; a down or unreachable node is that alone (what it
    ran before is a memory, not a set of problems)."""
    if not node.up:
        return [Problem(Kind.NODE_DOWN, node.name, state="DOWN", detail=node.error, since=node.last_heartbeat)]
    if not node.reachable:
        return [Problem(Kind.NODE_UNREACHABLE, node.name, state="UNREACHABLE", detail=node.error,
                        since=node.state_as_of)]
    found = []
    if node.foreign:
        found.append(Problem(Kind.FOREIGN, node.name, subject=node.applied_revision, detail=node.foreign))
    if node.local_revision or not same_revision(node.desired_revision, node.applied_revision):
        why = "per-node revision" if node.local_revision else f"desired {node.desired_revision or '-'}"
        detail = f"{why}; {node.error}" if node.error else why  # a refused config says so in node.error
        found.append(Problem(Kind.DRIFT, node.name, subject=node.applied_revision or "-", detail=detail))
    if node.edited_by_hand:
        found.append(Problem(Kind.EDITED_BY_HAND, node.name, detail="the node's own files changed since loaded"))
    return found


_KIND_WORD = {opmodel.Kind.ROLLING_RESTART: "rolling restart", opmodel.Kind.CONFIG_ROLLOUT: "config rollout",
              opmodel.Kind.AGENT_UPGRADE: "rolling agent upgrade"}


def operation_problem(op: opmodel.Operation, now: float) -> Problem | None:
    """A paused operation waits for a person; a failed one is news for a day."""
    recent_failure = op.state == opmodel.OpState.FAILED and now - op.updated_at < FAILED_OPERATION_WINDOW
    if op.state != opmodel.OpState.PAUSED and not recent_failure:
        return None
    what = op.spec.group or op.spec.config_name  # an agent upgrade has neither
    head = _KIND_WORD.get(op.spec.kind, "operation") + (f" of {what}" if what else "")
    detail = f"{head}: {op.reason}" if op.reason else head
    return Problem(Kind.OPERATION, subject=op.id, state=op.state.value, detail=detail, since=op.updated_at)


# A node's part of one group's counts: (group, total, running, problems, ((state, count), ...)).
_GroupShare = tuple[str, int, int, int, tuple[tuple[str, int], ...]]


@dataclass(frozen=True)
class _NodeShare:
    """One node's part of a summary, worked out once per process list (processes.ProcessList)."""

    current: bool
    running: int
    groups: tuple[_GroupShare, ...]
    problems: tuple[Problem, ...]


def _node_share(node: NodeInfo, processes: Sequence[ProcessView], current: bool) -> _NodeShare:
    groups: dict[str, list[Any]] = {}  # group -> [total, running, problems, {state: count} or None]
    problems = []
    running = 0
    for proc in processes:
        counts = groups.get(proc.group)
        if counts is None:
            counts = groups[proc.group] = [0, 0, 0, None]
        counts[0] += 1
        if not current:
            continue  # all of them UNREACHABLE, below
        if proc.state == _RUNNING:
            running += 1
            counts[1] += 1
            if proc.health != _HEALTH_UNHEALTHY:
                continue  # the common case, kept short: plain ints, no call
        trouble = process_problem(proc)
        if trouble:
            counts[2] += 1
            problems.append(Problem(Kind.PROCESS, node.name, proc.namespec, trouble,
                                    proc.health_message if trouble == UNHEALTHY else proc.description,
                                    proc.stop or proc.start))
        if proc.state != ProcState.RUNNING or trouble:
            state = trouble or proc.statename
            states = counts[3] = counts[3] or {}
            states[state] = states.get(state, 0) + 1
    if not current:
        return _NodeShare(False, 0, tuple((name, total, 0, total, ((UNREACHABLE, total),))
                                          for name, (total, *_) in groups.items()), ())
    return _NodeShare(True, running, tuple((name, total, up, trouble, tuple(states.items()) if states else ())
                                           for name, (total, up, trouble, states) in groups.items()),
                      tuple(problems))


def _share_of(entry: NodeProcesses) -> _NodeShare:
    """The node's share, kept on its process list while that list and the node's liveness stay."""
    current = live(entry.node)
    processes = entry.processes
    kept = processes.digest if isinstance(processes, ProcessList) else None
    if isinstance(kept, _NodeShare) and kept.current == current:
        return kept
    share = _node_share(entry.node, processes, current)
    if isinstance(processes, ProcessList):
        processes.digest = share
    return share


def summarize(nodes: Sequence[NodeProcesses], operations: Iterable[opmodel.Operation], now: float,
              limit: int = PROBLEM_LIMIT) -> FleetSummary:
    """One pass over the nodes; a node's processes are looked at only when its list changed
    (a big fleet's summary is mostly nodes where nothing did)."""
    summary = FleetSummary(nodes=len(nodes))
    groups: dict[str, GroupSummary] = {}
    problems: list[Problem] = []
    for entry in nodes:
        node = entry.node
        summary.nodes_up += node.up
        summary.nodes_reachable += node.reachable
        summary.processes += len(entry.processes)
        problems += node_problems(node)
        share = _share_of(entry)
        summary.running += share.running
        problems += share.problems
        for name, total, running, trouble, states in share.groups:
            group = groups.get(name)
            if group is None:
                group = groups[name] = GroupSummary(name)
            group.total += total
            group.running += running
            group.problems += trouble
            for state, count in states:
                group.count(state, node.name, count)
    for op in operations:
        if (problem := operation_problem(op, now)) is not None:
            problems.append(problem)
    summary.groups = sorted(groups.values(), key=lambda g: (not g.problems, g.group))
    summary.problems_total = len(problems)
    summary.problems = heapq.nsmallest(limit, problems, key=Problem.rank)
    return summary


def select(nodes: Sequence[NodeProcesses], states: frozenset[str], problems: bool) -> list[NodeProcesses]:
    """The rows a `states` or `problems` filter keeps: a node with no process left is left out,
    except that `problems` keeps a node that is a problem itself (down, drift, ...), without
    its processes when it is down or unreachable."""
    if not states and not problems:
        return list(nodes)
    kept = []
    for entry in nodes:
        node = entry.node
        if problems and not live(node):
            procs: list[ProcessView] = []
        else:
            procs = [p for p in entry.processes
                     if (not states or state_of(p) in states) and (not problems or process_problem(p))]
        if procs or (problems and node_problems(node)):
            kept.append(NodeProcesses(node, procs))
    return kept


def unknown_states(states: Iterable[str]) -> list[str]:
    return [s for s in states if s not in STATES]


def touches(op: opmodel.Operation, nodes: Iterable[str]) -> bool:
    """Whether the operation has a step on one of the selected nodes (the request's patterns
    and labels select operations through their nodes)."""
    chosen = set(nodes)
    return any(step.node in chosen for step in op.steps())
