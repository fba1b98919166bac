"""The rows the status stream sends, built from the core's own records, and what changed.

Pure: no I/O. A process row is a short list (PROC_FIELDS gives the columns, sent once with the
first message) keyed NODE:GROUP:NAME, so 10,000 rows are about half the bytes of objects. Rows
are kept per stream and rebuilt only for the process records that changed: livestate.py
replaces a record when the agent says something new about it, so an unchanged record is the
same object and its row is reused (a node whose records are all unchanged is one pass of
identity tests, no row looked at, nothing encoded).

Each row carries whether the caller may control it (start, stop, restart, signal): the answer
of the same Authorizer.allows that Checks.control asks before a Control runs, worked out per
node for grants that cover whole nodes and per process only where a grant names programs.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetvisor.agent.security.identity import Identity
from fleetvisor.agent.security.policy import CONTROL, Authorizer
from fleetvisor.v1 import agent_pb2 as apb

from ..processes import ProcessView
from ..views import FleetStatus, NodeInfo

PROC_FIELDS = ("namespec", "group", "name", "statename", "pid", "start", "stop", "exitstatus", "spawnerr",
               "health", "health_message", "description", "control")
NODE_FIELDS = ("name", "address", "agent_version", "up", "reachable", "applied_revision", "desired_revision",
               "error", "started_at", "edited_by_hand", "foreign", "local_revision", "pinned", "pinned_by")
HEALTH = {v: ("" if v == apb.HEALTH_UNSPECIFIED else apb.Health.Name(v)) for v in apb.Health.values()}
ALL, NONE, SOME = "all", "none", "some"
SLICE = 1000  # rows built between two turns of the event loop (or REBUILD times as many looked at)
REBUILD = 5   # a row built costs about this many rows found unchanged
CHUNK = 2000  # process rows per message: a 10,000-row view is five short encodes, not one long one


@dataclass
class ControlScope:
    """Where `who` may control, under one Authorizer (a new one, after a policy change, is a new
    ControlScope). Per node: ALL, NONE or SOME (then each process is asked)."""

    authorizer: Authorizer
    who: Identity | None  # None: an anonymous visitor, who never writes
    _nodes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = field(default_factory=dict)

    def node(self, name: str, labels: Mapping[str, str]) -> str:
        key = (name, tuple(sorted(labels.items())))
        mode = self._nodes.get(key)
        if mode is None:
            mode = self._node(name, labels)
            if len(self._nodes) >= 100_000:
                self._nodes.clear()
            self._nodes[key] = mode
        return mode

    def _node(self, name: str, labels: Mapping[str, str]) -> str:
        if self.who is None:
            return NONE
        grants = [g for g in self.authorizer.scopes(self.who, CONTROL) if g.scope.covers_node(name, labels)]
        if not grants:
            return NONE
        return ALL if any(g.scope.programs in ("", "*") for g in grants) else SOME

    def process(self, mode: str, name: str, labels: Mapping[str, str], proc: ProcessView) -> bool:
        if mode != SOME:
            return mode == ALL
        assert self.who is not None
        return self.authorizer.allows(self.who, CONTROL, node=name, labels=labels, program=(proc.group, proc.name))


def node_row(n: NodeInfo, mode: str, processes: int) -> dict[str, Any]:
    # a field at its zero value is left out (the page reads a missing one as empty or false)
    row: dict[str, Any] = {k: v for k in NODE_FIELDS if (v := getattr(n, k))}
    row["processes"] = processes
    row["labels"] = dict(n.labels)
    row["drift"] = bool(n.desired_revision) and n.desired_revision != n.applied_revision
    row["control"] = mode
    return row


def process_row(p: Any, control: bool) -> list[Any]:
    # a RUNNING description is its uptime, which changes every second: the page counts it
    return [p.namespec, p.group, p.name, p.statename, p.pid, round(p.start), round(p.stop), p.exitstatus, p.spawnerr,
            HEALTH.get(p.health, ""), p.health_message, "" if p.statename == "RUNNING" else p.description,
            1 if control else 0]


@dataclass
class Model:
    """The rows of one status, keyed as the page keys them."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    procs: dict[str, list[Any]] = field(default_factory=dict)
    heartbeats: dict[str, float] = field(default_factory=dict)
    stale: dict[str, Any] | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeRows:
    """One node's rows as a stream last built them: the records, in the order given, and the mode."""

    mode: str
    order: list[object]
    records: dict[str, object]
    rows: dict[str, list[Any]]


@dataclass
class RowCache:
    """Rows by node and key with the records they were built from, for one stream. A node whose
    records are all the same objects as last time keeps its rows without a look at any of them."""

    nodes: dict[str, NodeRows] = field(default_factory=dict)
    scope: ControlScope | None = None
    rebuilt: list[str] = field(default_factory=list)  # the keys whose rows the last model built anew

    def model(self, status: FleetStatus, summary: dict[str, Any], stale: dict[str, Any] | None,
              scope: ControlScope) -> Model:
        for step in self.steps(status, summary, stale, scope):
            if step is not None:
                return step
        raise AssertionError("steps ends with the model")

    def steps(self, status: FleetStatus, summary: dict[str, Any], stale: dict[str, Any] | None,
              scope: ControlScope, rows_per_step: int = SLICE) -> Iterator[Model | None]:
        """The model, in steps of about `rows_per_step` rows built, or REBUILD times as many
        found unchanged (None between them, where the caller's loop may run other work), then
        the Model."""
        if scope is not self.scope:  # policies changed: every flag is asked again
            self.nodes.clear()
            self.scope = scope
        model = self.head(status, summary, stale, scope)
        fresh: dict[str, NodeRows] = {}
        rebuilt: list[str] = []
        work = 0
        for entry in status.nodes:
            n, procs = entry.node, entry.processes
            mode = model.nodes[n.name]["control"]
            had = self.nodes.get(n.name)
            if had is not None and had.mode != mode:
                had = None
            if had is not None and len(had.order) == len(procs) and all(map(operator.is_, had.order, procs)):
                fresh[n.name] = had
                work += len(procs)
            else:
                fresh[n.name], built = self._node(n, procs, mode, had, rebuilt)
                work += len(procs) + built * (REBUILD - 1)
            model.procs.update(fresh[n.name].rows)
            if work >= rows_per_step * REBUILD:
                work = 0
                yield None
        self.nodes, self.rebuilt = fresh, rebuilt
        yield model

    def _node(self, n: NodeInfo, procs: Sequence[Any], mode: str, had: NodeRows | None,
              rebuilt: list[str]) -> tuple[NodeRows, int]:
        """A node's rows, reusing those of records that did not change; how many were built."""
        assert self.scope is not None
        prefix = n.name + ":"
        records: dict[str, object] = {}
        rows: dict[str, list[Any]] = {}
        built = 0
        for p in procs:
            key = prefix + p.group + ":" + p.name
            if had is not None and had.records.get(key) is p:
                rows[key] = had.rows[key]
            else:
                rows[key] = process_row(p, self.scope.process(mode, n.name, n.labels, p))
                rebuilt.append(key)
                built += 1
            records[key] = p
        return NodeRows(mode, list(procs), records, rows), built

    @staticmethod
    def head(status: FleetStatus, summary: dict[str, Any], stale: dict[str, Any] | None,
             scope: ControlScope) -> Model:
        """The model without its process rows: what a first view draws before they arrive."""
        model = Model(stale=stale, summary=summary)
        for entry in status.nodes:
            n = entry.node
            model.nodes[n.name] = node_row(n, scope.node(n.name, n.labels), len(entry.processes))
            model.heartbeats[n.name] = n.last_heartbeat
        return model


def split(change: dict[str, Any], rows: int = CHUNK) -> list[dict[str, Any]]:
    """`change` as messages of at most `rows` process rows: the first carries everything else
    (a full view's summary and nodes are drawn before its rows arrive), each says how many
    rows are still to come in `more`."""
    procs = change.get("procs")
    if not procs or len(procs) <= rows:
        return [change]
    keys = list(procs)
    head = {k: v for k, v in change.items() if k != "procs"}
    head["procs"] = {k: procs[k] for k in keys[:rows]}
    out = [head]
    for at in range(rows, len(keys), rows):
        out.append({"full": False, "procs": {k: procs[k] for k in keys[at:at + rows]}})
    for i, message in enumerate(out):
        message["more"] = len(keys) - min(len(keys), (i + 1) * rows)
    return out


def diff(old: Model | None, new: Model, rebuilt: list[str] | None = None) -> dict[str, Any]:
    """What the page must change to show `new` after `old` (everything when `old` is None).
    `rebuilt`, the keys of the rows RowCache built for `new` (every other row is the one `old`
    has), spares a look at every row."""
    before = old or Model()
    out: dict[str, Any] = {"full": old is None}
    if old is None:
        out["proc_fields"] = PROC_FIELDS
    nodes = {k: v for k, v in new.nodes.items() if before.nodes.get(k) != v}
    old_procs, new_procs = before.procs, new.procs
    if rebuilt is None:  # rows of unchanged records are the very same lists: identity first
        procs = {k: v for k, v in new_procs.items() if (o := old_procs.get(k)) is not v and o != v}
    else:
        procs = {k: v for k in rebuilt if old_procs.get(k) != (v := new_procs[k])}
    # a key can only be gone when the count does not add up with the new ones
    added = sum(1 for k in procs if k not in old_procs)
    gone_procs = sorted(old_procs.keys() - new_procs.keys()) if len(old_procs) + added != len(new_procs) else []
    gone_nodes = sorted(before.nodes.keys() - new.nodes.keys())
    if nodes:
        out["nodes"] = nodes
    if procs:
        out["procs"] = procs
    if gone_nodes:
        out["gone_nodes"] = gone_nodes
    if gone_procs:
        out["gone_procs"] = gone_procs
    if old is None or new.stale != before.stale:
        out["stale"] = new.stale
    if old is None or new.summary != before.summary:
        out["summary"] = new.summary
    return out
