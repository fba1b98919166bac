"""What the controller keeps in etcd: the key layout and the records stored under it.

Keys are relative to the cluster prefix (`/fleetvisor/<cluster>/`); values are JSON. Records
are plain dataclasses so the logic that reads them never sees etcd or JSON.

    members/<node>             MemberRecord: every node ever registered (no lease: a silent
                               node is shown down, not forgotten)
    nodes/<node>               NodeRecord: the live registration, attached to the lease of the
                               controller the node heartbeats to, deleted there once the node is
                               silent for the TTL (registrations.py); written again only for a
                               new lease or another controller
    configs/<name>/revs/<n>    RevisionRecord: immutable
    assignments/<name>         AssignmentRecord: the current revision of a config and where it goes
    reconcile/<node>           ReconcileRecord: the leader's last push to the node and its outcome
    audit/<time>-<id>          AuditRecord
    ops/<id>                   an operation (opmodel.py: versioned JSON): plan and progress
    acl/<name>                 an authorization policy (agent/security/policy.py Policy.to_json)
    revoked/<serial>           RevocationRecord: a certificate refused from now on
    leader                     the election key: JSON {"id", "address"}
    controllers/<id>           ControllerRecord: a running controller and where its peers reach it,
                               on a lease of its own (roster.py); the live ones share the agents'
                               state streams among them (assignment.py)
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
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Generic, TypeVar, get_args, get_origin, get_type_hints

from .errors import CorruptRecord

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
DASHBOARD_KEY = "dashboard/token-key"  # the HMAC key of dashboard tokens: made once, read by every controller
OVERRIDES = "overrides/"
CONTROLLERS = "controllers/"

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


def controller_key(controller_id: str) -> str:
    return CONTROLLERS + controller_id


def revoked_key(serial: str) -> str:
    return REVOKED + serial


def audit_key(when: float) -> str:
    return f"{AUDIT}{int(when * 1e6):017d}-{uuid.uuid4().hex[:8]}"


def encode(record: object) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()  # type: ignore[call-overload]


def decode(cls: type[T], raw: bytes | None) -> T | None:
    """A record from its JSON, or None when there is none or it cannot be read (see `load`)."""
    try:
        return load(cls, "", raw)
    except CorruptRecord:
        return None


class Decoded(Generic[T]):
    """Records of one kind, decoded once per stored value: a status call reads one per node,
    thousands of them, and decoding each every time was a third of its cost."""

    def __init__(self, cls: type[T]) -> None:
        self.cls = cls
        self._cache: dict[str, tuple[bytes, T | None]] = {}

    def get(self, key: str, raw: bytes | None) -> T | None:
        if raw is None:
            self._cache.pop(key, None)
            return None
        hit = self._cache.get(key)
        if hit is not None and hit[0] == raw:
            return hit[1]
        record = decode(self.cls, raw)
        self._cache[key] = (raw, record)
        return record


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """A record class's field types, resolved once: resolving them evaluates every annotation
    (with `from __future__ import annotations`), which cost more than the JSON decode itself
    and, at a few hundred nodes, most of the controller's CPU (membership reads every member
    record on each reconcile pass)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    return hints


def load(cls: type[T], key: str, raw: bytes | None) -> T | None:
    """A record from its JSON (None: no value); unknown fields (from a newer controller) are
    ignored. A value that is not this record (not JSON, not an object, a required field missing,
    a field of the wrong type) raises CorruptRecord naming `key`: whatever wrote it, the reader
    must not trip over it later."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        raise CorruptRecord(f"{key}: not JSON") from None
    if not isinstance(data, dict):
        raise CorruptRecord(f"{key}: not a JSON object")
    hints = _hints(cls)
    known = {k: v for k, v in data.items() if k in hints}
    for name, value in known.items():
        if not fits(value, hints[name]):
            raise CorruptRecord(f"{key}: field {name} is not {_WORDS.get(hints[name], hints[name])}")
    try:
        record = cls(**known)
    except TypeError:
        missing = sorted(f.name for f in fields(cls)  # type: ignore[arg-type]
                         if f.name not in known and f.default is MISSING and f.default_factory is MISSING)
        raise CorruptRecord(f"{key}: field {', '.join(missing)} missing") from None
    check = getattr(record, "check", None)
    if check is not None:
        try:
            check()
        except (TypeError, ValueError, KeyError) as exc:
            raise CorruptRecord(f"{key}: {exc}") from None
    return record


_INT64 = range(-(1 << 63), 1 << 63)
_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          dict[str, str]: "an object of strings"}


def fits(value: object, hint: object) -> bool:
    """Whether a JSON value is of a record field's type (the simple ones records use)."""
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and value in _INT64
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    origin, args = get_origin(hint), get_args(hint)
    if origin is dict:
        return isinstance(value, dict) and all(fits(k, args[0]) and fits(v, args[1]) for k, v in value.items())
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and all(fits(v, args[0]) for v in value)
    return False


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
    lease: int  # the controller's registration lease
    last_heartbeat: float  # when the node registered on it (later heartbeats write nothing)
    controller_id: str = ""  # the controller the node heartbeats to


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

    def check(self) -> None:
        selector_from(self.selector)


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
        op, previous, done = self.rollout.get("op"), self.rollout.get("previous"), self.rollout.get("done", ())
        if not fits(op, str) or not fits(previous, int) or not fits(done, tuple[str, ...]):
            raise ValueError("the rollout is not an operation id, a previous revision and the nodes done")
        return Rollout(op, previous, tuple(done))  # type: ignore[arg-type]

    def target(self) -> Selector:
        return selector_from(self.selector)

    def check(self) -> None:
        self.target()
        self.active_rollout()


def selector_from(data: dict[str, Any]) -> Selector:
    """A Selector as stored. Raises ValueError for one that is not (records check it on load)."""
    nodes, labels = data.get("nodes", ()), data.get("labels", {})
    if not fits(nodes, tuple[str, ...]) or not fits(labels, dict[str, str]):
        raise ValueError("the selector is not a list of node names and an object of labels")
    return Selector(tuple(nodes), dict(labels))


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
class ControllerRecord:
    id: str
    address: str  # its gRPC face as other controllers dial it (--advertise)
    started_at: float = 0.0


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
