"""What the controller keeps in etcd: the key layout and the records stored under it.

Keys are relative to the cluster prefix (`/fleetvisor/<cluster>/`); values are JSON. Records
are plain dataclasses so the logic that reads them never sees etcd or JSON.

    members/<node>             MemberRecord: every node ever registered (no lease: a silent
                               node is shown down, not forgotten)
    nodes/<node>               NodeRecord: the live registration, attached to a lease renewed by
                               the node's heartbeats
    configs/<name>/revs/<n>    RevisionRecord: immutable
    assignments/<name>         AssignmentRecord: the current revision of a config and where it goes
    reconcile/<node>           ReconcileRecord: the leader's last push to the node and its outcome
    audit/<time>-<id>          AuditRecord
    ops/<id>                   an operation (opmodel.py: versioned JSON): plan and progress
    acl/<name>                 an authorization policy (agent/security/policy.py Policy.to_json)
    revoked/<serial>           RevocationRecord: a certificate refused from now on
    leader                     the election key: JSON {"id", "address"}
    cluster-id                 ClusterRecord: the identity of this fleet's data, a random id made once
                               (create-if-absent) by the first controller that starts on the store.
                               Agents keep the id of the controller that last applied a revision
                               there; a node that reports another id is foreign (nodepolicy.py)
    overrides/<node>           OverrideRecord: what an operator said about one node (adopted from
                               another cluster, pinned at its local state) and the foreign reason and
                               local revision the leader last logged and audited
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

MEMBERS = "members/"
NODES = "nodes/"
CONFIGS = "configs/"
ASSIGNMENTS = "assignments/"
RECONCILE = "reconcile/"
AUDIT = "audit/"
OPS = "ops/"
ACL = "acl/"
REVOKED = "revoked/"
LEADER = "leader"
CLUSTER_ID = "cluster-id"
OVERRIDES = "overrides/"

T = TypeVar("T")


def prefix_of(cluster: str) -> str:
    return f"/fleetvisor/{cluster}/"


def member_key(node: str) -> str:
    return MEMBERS + node


def node_key(node: str) -> str:
    return NODES + node


def revision_key(name: str, revision: int) -> str:
    # zero-padded so that etcd's byte order is revision order
    return f"{CONFIGS}{name}/revs/{revision:010d}"


def revisions_prefix(name: str) -> str:
    return f"{CONFIGS}{name}/revs/"


def assignment_key(name: str) -> str:
    return ASSIGNMENTS + name


def reconcile_key(node: str) -> str:
    return RECONCILE + node


def op_key(op_id: str) -> str:
    return OPS + op_id


def acl_key(name: str) -> str:
    return ACL + name


def override_key(node: str) -> str:
    return OVERRIDES + node


def revoked_key(serial: str) -> str:
    return REVOKED + serial


def audit_key(when: float) -> str:
    return f"{AUDIT}{int(when * 1e6):017d}-{uuid.uuid4().hex[:8]}"


def encode(record: object) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()  # type: ignore[call-overload]


def decode(cls: type[T], raw: bytes | None) -> T | None:
    """A record from its JSON; unknown fields (from a newer controller) are ignored."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


@dataclass(frozen=True)
class MemberRecord:
    name: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    agent_version: str = ""
    started_at: float = 0.0
    run_id: str = ""
    applied_revision: str = ""
    edited_by_hand: bool = False
    first_seen: float = 0.0
    cluster_id: str = ""  # the cluster identity of the controller that last applied a revision there
    local_revision: bool = False  # the applied revision was applied per node with --force
    local_sections: list[str] = field(default_factory=list)  # "program:x", ... of the node's own files


@dataclass(frozen=True)
class NodeRecord:
    lease: int
    last_heartbeat: float
    controller_id: str = ""


@dataclass(frozen=True)
class Selector:
    """Which nodes a config goes to: named ones, plus those whose labels all match."""

    nodes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))

    @property
    def empty(self) -> bool:
        return not self.nodes and not self.labels

    def matches(self, member: MemberRecord) -> bool:
        if member.name in self.nodes:
            return True
        return bool(self.labels) and labels_match(member.labels, self.labels)


def labels_match(have: dict[str, str], want: dict[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


@dataclass(frozen=True)
class RevisionRecord:
    text: str
    author: str
    message: str
    created_at: float
    sha256: str
    selector: dict[str, Any] = field(default_factory=dict)  # Selector as stored
    rollback_of: int = 0


@dataclass(frozen=True)
class Rollout:
    """A rolling push in progress: nodes not yet `done` keep running `previous` (0: nothing)."""

    op: str
    previous: int
    done: tuple[str, ...] = ()


@dataclass(frozen=True)
class AssignmentRecord:
    revision: int
    selector: dict[str, Any] = field(default_factory=dict)
    updated_at: float = 0.0
    rollout: dict[str, Any] = field(default_factory=dict)  # a Rollout as stored; empty: none
    # revision (as a string: JSON keys) -> why it never became current: its rollout failed or
    # was aborted, and `revision` went back to the last one fully rolled out
    withdrawn: dict[str, str] = field(default_factory=dict)
    # who deleted the config (`fleetctl config delete`): it goes to no node and is listed no
    # more; its revisions stay, as history and so that nodes still running one are not foreign
    deleted_by: str = ""

    def active_rollout(self) -> Rollout | None:
        if not self.rollout:
            return None
        return Rollout(str(self.rollout["op"]), int(self.rollout["previous"]), tuple(self.rollout.get("done", ())))

    def target(self) -> Selector:
        return selector_from(self.selector)


def selector_from(data: dict[str, Any]) -> Selector:
    return Selector(tuple(data.get("nodes", ())), dict(data.get("labels", {})))


def selector_data(selector: Selector) -> dict[str, Any]:
    return {"nodes": list(selector.nodes), "labels": dict(selector.labels)}


@dataclass(frozen=True)
class ReconcileRecord:
    desired: str = ""
    applied: str = ""
    last_error: str = ""
    attempts: int = 0
    last_attempt: float = 0.0
    refused: dict[str, str] = field(default_factory=dict)  # configs the node refused, with why

    def refusal(self, config: str) -> str:
        """Why the last push did not bring `config` to the node ("" if it did, or was not pushed)."""
        return self.refused.get(config, "") if self.refused else self.last_error


@dataclass(frozen=True)
class AuditRecord:
    time: float
    who: str
    action: str
    detail: str
    ok: bool
    result: str
    controller_id: str = ""


@dataclass(frozen=True)
class RevocationRecord:
    serial: str  # lower-case hex, as identity.Identity.serial
    name: str = ""  # what the certificate was issued to, for people to read
    who: str = ""
    time: float = 0.0


@dataclass(frozen=True)
class ClusterRecord:
    id: str
    created_at: float = 0.0
    created_by: str = ""  # the controller that made it


@dataclass(frozen=True)
class OverrideRecord:
    """An operator's word about one node, and what the leader last said about it.

    adopted_from: the cluster id the node reported when it was adopted (adoption holds while it
    reports that one; "" none); kept_revision: with `adopt --keep`, the revision it ran then,
    taken as this cluster's while its desired revision stays `kept_desired` ("" with replace;
    "none" for a node that ran nothing).
    """

    pinned: bool = False
    pinned_by: str = ""
    pinned_at: float = 0.0
    pin_reason: str = ""
    adopted: bool = False
    adopted_from: str = ""
    adopted_applied: str = ""  # what it ran when adopted
    kept_revision: str = ""
    kept_desired: str = ""
    adopted_by: str = ""
    adopted_at: float = 0.0
    noted_foreign: str = ""  # the foreign reason last logged and audited ("" not foreign)
    noted_drift: str = ""  # the local revision last logged and audited ("" none)
