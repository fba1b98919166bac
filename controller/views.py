"""What the fleet looks like: nodes, their processes and their configs, composed per request
from the mirror (membership, configs) and the node links (live process state)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import records, selection
from .configs import Current
from .configstore import ConfigStore
from .errors import NotFound
from .livestate import NodeLinks
from .membership import Membership
from .mirror import Mirror
from .nodepolicy import same_revision
from .overrides import Overrides, held_reason
from .processes import ProcessView
from .records import MemberRecord, OverrideRecord, ReconcileRecord


@dataclass(frozen=True)
class NodeInfo:
    name: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    agent_version: str = ""
    up: bool = False  # heartbeats arrive (the node's registration is alive)
    reachable: bool = False  # the state stream to the agent is connected (here, or at the controller that follows it)
    last_heartbeat: float = 0.0
    state_as_of: float = 0.0  # unix time the cached process state was last known current
    applied_revision: str = ""
    desired_revision: str = ""
    error: str = ""  # why the node is unreachable, or the last apply error
    started_at: float = 0.0
    edited_by_hand: bool = False
    foreign: str = ""  # why the node is foreign (nodepolicy.py); "" when it is not
    local_revision: bool = False  # drift: it runs a revision applied per node with --force
    pinned: bool = False
    pinned_by: str = ""
    cluster_id: str = ""  # the cluster identity the node reports


@dataclass(frozen=True)
class NodeProcesses:
    node: NodeInfo
    processes: Sequence[ProcessView]


@dataclass(frozen=True)
class Freshness:
    """Whether what this controller serves is current: while it cannot follow etcd (its watch
    is down), reads come from its last copy, which is `as_of` that time, and `reason` says why."""

    etcd_unavailable: bool = False
    as_of: float = 0.0  # unix time the copy was last known current (0: it is current)
    reason: str = ""


@dataclass(frozen=True)
class FleetStatus:
    nodes: list[NodeProcesses]
    now: float
    controller_id: str
    freshness: Freshness = Freshness()


@dataclass(frozen=True)
class NodeConfigStatus:
    node: str
    desired_revision: str
    applied_revision: str
    in_sync: bool
    last_error: str
    last_attempt: float
    attempts: int  # failed pushes since the last success
    edited_by_hand: bool
    up: bool
    refused: dict[str, str] = field(default_factory=dict)  # configs the node refused, with why
    held: str = ""  # why nothing is pushed to the node (pinned, foreign); "" when it is reconciled


_Configs = tuple[tuple[int, ...], dict[str, Current]]  # ConfigStore's generation, and the current configs


@dataclass(frozen=True)
class _Facts:
    inputs: tuple[object, ...]  # the records and values they were worked out from
    desired: str
    applied: str
    refusal: str  # the last push's error while the node is not as desired
    foreign: str
    local: bool
    override: OverrideRecord
    reconcile: ReconcileRecord


class Views:
    def __init__(self, membership: Membership, configs: ConfigStore, links: NodeLinks, controller_id: str,
                 overrides: Overrides, mirror: Mirror | None = None) -> None:
        self.mirror = mirror
        self.overrides = overrides
        self.membership = membership
        self.configs = configs
        self.links = links
        self.controller_id = controller_id
        self._kept: dict[str, _Facts] = {}  # see _facts

    def _configs(self) -> _Configs:
        return self.configs.generation(), self.configs.current_configs()

    def _facts(self, member: MemberRecord, configs: _Configs) -> _Facts:
        """What node_info works out from the node's records, kept while they stay the same (a
        status of thousands of nodes would otherwise work it all out for each, each call)."""
        name = member.name
        reconcile = self.configs.reconcile_record(name)
        override = self.overrides.record(name)
        applied = self.membership.applied(member)
        local = self.membership.local(member)
        generation, current = configs
        inputs = (member, generation, reconcile, override, applied, local, self.overrides.cluster_id)
        kept = self._kept.get(name)
        if kept is not None and kept.inputs == inputs:
            return kept
        desired = self.configs.desired(member, current).revision
        refusal = ""
        if reconcile.last_error and not same_revision(desired, applied):
            refusal = reconcile.last_error if reconcile.refused else f"config not applied: {reconcile.last_error}"
        facts = self._kept[name] = _Facts(inputs, desired, applied, refusal, self.overrides.foreign(member, override),
                                          local, override, reconcile)
        return facts

    def node_info(self, member: MemberRecord, configs: _Configs) -> NodeInfo:
        facts = self._facts(member, configs)
        link = self.links.get(member.name)
        reachable = bool(link and link.reachable)
        return NodeInfo(
            name=member.name, address=member.address, labels=member.labels, agent_version=member.agent_version,
            up=self.membership.is_up(member.name), reachable=reachable,
            last_heartbeat=self.membership.last_alive(member.name),
            state_as_of=time.time() if reachable else (link.state_as_of if link else 0),
            applied_revision=facts.applied, desired_revision=facts.desired,
            error=link.error if link and not reachable else facts.refusal,
            started_at=member.started_at, edited_by_hand=member.edited_by_hand, foreign=facts.foreign,
            local_revision=facts.local, pinned=facts.override.pinned, pinned_by=facts.override.pinned_by,
            cluster_id=member.cluster_id)

    def _forget_gone(self, members: dict[str, MemberRecord]) -> None:
        """Drop what is kept for nodes that are members no more."""
        if len(self._kept) > len(members):
            self._kept = {name: facts for name, facts in self._kept.items() if name in members}

    def pick(self, patterns: list[str], labels: dict[str, str], *,
             described: bool = True) -> list[tuple[MemberRecord, Sequence[ProcessView]]]:
        """The nodes and processes that patterns and labels select. An exact node name that is not
        a member, or a process pattern that matches nothing on any node that has data, is NotFound.
        Without `described`, RUNNING processes keep the description the agent sent (a summary
        shows none, and formatting an uptime per process is most of a big fleet's status)."""
        try:
            parsed = selection.parse_all(patterns)
        except selection.SelectionError as exc:
            raise NotFound(str(exc)) from None
        members = self.membership.members()
        self._forget_gone(members)
        for p in parsed:
            if p.exact_node and p.node not in members:
                raise NotFound(f"no such node: {p.node}")
        chosen = []
        matched = [False] * len(parsed)
        for name, member in members.items():
            if not records.labels_match(member.labels, labels):
                continue
            hits = [i for i, p in enumerate(parsed) if p.matches_node(name)]
            if not hits:
                continue
            link = self.links.get(name)
            found: Sequence[ProcessView] = (link.snapshot() if described else link.ordered()) if link else []
            procs: Sequence[ProcessView] = found  # undescribed: the link's list, which a summary keeps counts on
            if not all(parsed[i].spec == "*" for i in hits):  # not the whole node: match each process
                procs = []
                for proc in found:
                    wanted = [i for i in hits if parsed[i].matches_process(proc.group, proc.name)]
                    for i in wanted:
                        matched[i] = True
                    if wanted:
                        procs.append(proc)
            has_data = link is not None and link.has_data
            if any(parsed[i].spec == "*" for i in hits) or not has_data:
                for i in hits:
                    matched[i] = matched[i] or parsed[i].spec == "*" or not has_data
            chosen.append((member, sorted(procs, key=lambda p: p.namespec) if described else procs))
        for i, p in enumerate(parsed):
            if not matched[i] and p.spec != "*":
                raise NotFound(f"no such process: {patterns[i]}")
        return chosen

    def freshness(self) -> Freshness:
        mirror = self.mirror
        if mirror is None or mirror.connected:
            return Freshness()
        return Freshness(True, mirror.lost_at, f"etcd is unavailable at {mirror.endpoints()}: {mirror.last_error}")

    def status(self, patterns: list[str], labels: dict[str, str], *, described: bool = True) -> FleetStatus:
        configs = self._configs()
        return FleetStatus([NodeProcesses(self.node_info(member, configs), procs)
                            for member, procs in self.pick(patterns, labels, described=described)],
                           now=time.time(), controller_id=self.controller_id, freshness=self.freshness())

    def nodes(self, labels: dict[str, str]) -> list[NodeInfo]:
        configs = self._configs()
        return [self.node_info(m, configs) for m in self.membership.select(labels).values()]

    def config_status(self) -> list[NodeConfigStatus]:
        configs = self._configs()
        result = []
        members = self.membership.members()
        self._forget_gone(members)
        for name, member in members.items():
            facts = self._facts(member, configs)
            rec = facts.reconcile
            in_sync = same_revision(facts.desired, facts.applied)
            result.append(NodeConfigStatus(
                node=name, desired_revision=facts.desired, applied_revision=facts.applied, in_sync=in_sync,
                last_error="" if in_sync else rec.last_error, last_attempt=rec.last_attempt,
                attempts=0 if in_sync else rec.attempts, edited_by_hand=member.edited_by_hand,
                up=self.membership.is_up(name), refused={} if in_sync else rec.refused,
                held=held_reason(name, facts.override, facts.foreign)))
        return result
