"""Authorization policies: which identities may use which verbs on which scope.

A policy names its subjects (users, groups, roles), the verbs it grants and a scope: a label
selector and a node glob that say which nodes, and a program pattern that says which
processes. For deploy it also lists the users the programs it pushes may run as. Policies
live in etcd (`acl/<name>`) and reach agents with their heartbeat answers.

Some grants are built in and need no policy:
- an operator certificate in group `admins` may do everything everywhere (the bootstrap);
- a viewer certificate may read everything;
- a controller certificate may read, control and deploy on agents (it checked the person), and
  follow the live state other controllers gather (`peer`, their PeerService);
- an agent certificate may heartbeat for its own node, and nothing else;
- a plaintext caller on loopback, or off it with `insecure` given, may do everything.

A role caps what any policy can give it: a viewer only ever reads, an agent only heartbeats.
Everything no grant covers is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from .identity import INSECURE_ROLE, LOCAL_ROLE, ROLES, Identity, IdentityError, check_name

READ, CONTROL, DEPLOY, ADMIN = "read", "control", "deploy", "admin"
VERBS = (READ, CONTROL, DEPLOY, ADMIN)
HEARTBEAT = "heartbeat"  # an agent reporting for its own node; no policy grants it
PEER = "peer"  # a controller following another's share of the agents' live state; no policy grants it
ADMINS_GROUP = "admins"
ANY_USER = "*"
ROOT = "root"  # what a program without user= runs as: the agent's user, root in production
POLICY_VERSION = 1
MAX_POLICY_BYTES = 16 * 1024
MAX_POLICIES = 1000

_ALL = frozenset(VERBS)
CAPS: dict[str, frozenset[str]] = {
    "agent": frozenset({HEARTBEAT}),
    "controller": frozenset({READ, CONTROL, DEPLOY, PEER}),
    "operator": _ALL,
    "viewer": frozenset({READ}),
    LOCAL_ROLE: _ALL | {HEARTBEAT, PEER},
    INSECURE_ROLE: _ALL | {HEARTBEAT, PEER},
}


class PolicyError(ValueError):
    """A policy that cannot be stored as given; the message names the field."""


def program_matches(pattern: str, group: str, name: str) -> bool:
    """supervisord's namespec with globs: `web` is group web, `web:*` and `web:web_0` name
    processes in it, `*` is everything."""
    if pattern in ("", "*"):
        return True
    if ":" not in pattern:
        return fnmatchcase(group, pattern)
    want_group, want_name = pattern.split(":", 1)
    return fnmatchcase(group, want_group) and fnmatchcase(name, want_name or "*")


@dataclass(frozen=True)
class Scope:
    labels: tuple[tuple[str, str], ...] = ()  # every pair must be on the node
    nodes: str = "*"                          # a glob on node names
    programs: str = "*"                       # a namespec pattern

    @property
    def everywhere(self) -> bool:
        return not self.labels and self.nodes == "*" and self.programs in ("", "*")

    @property
    def all_nodes(self) -> bool:
        return not self.labels and self.nodes == "*"

    def covers_node(self, node: str, labels: Mapping[str, str]) -> bool:
        return fnmatchcase(node, self.nodes) and all(labels.get(k) == v for k, v in self.labels)

    def covers_program(self, group: str, name: str) -> bool:
        return program_matches(self.programs, group, name)

    def covers_selector(self, labels: Mapping[str, str], nodes: Iterable[str]) -> bool:
        """Whether every node a selector can ever mean is in scope: a label scope needs the
        selector to require the same labels; a node glob needs an explicit list inside it."""
        names = list(nodes)
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        if self.nodes != "*":
            return bool(names) and all(fnmatchcase(n, self.nodes) for n in names)
        return True

    def __str__(self) -> str:
        parts = [",".join(f"{k}={v}" for k, v in self.labels) or "", "" if self.nodes == "*" else f"nodes {self.nodes}",
                 "" if self.programs in ("", "*") else f"programs {self.programs}"]
        text = " ".join(p for p in parts if p)
        return text or "everywhere"


EVERYWHERE = Scope()


@dataclass(frozen=True)
class Grant:
    verbs: frozenset[str]
    scope: Scope = EVERYWHERE
    run_as: frozenset[str] = frozenset()
    source: str = ""

    def may_run_as(self, user: str) -> bool:
        return ANY_USER in self.run_as or user in self.run_as


@dataclass(frozen=True)
class Policy:
    name: str
    verbs: frozenset[str]
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    scope: Scope = EVERYWHERE
    run_as: frozenset[str] = frozenset()

    def applies_to(self, identity: Identity) -> bool:
        if identity.role not in ROLES or identity.role == "agent":
            return False
        return (identity.role in self.roles or (identity.name in self.users and identity.role in ("operator", "viewer"))
                or bool(identity.groups & self.groups))

    def to_json(self) -> str:
        return json.dumps({
            "version": POLICY_VERSION, "name": self.name, "verbs": sorted(self.verbs),
            "subjects": {"users": sorted(self.users), "groups": sorted(self.groups), "roles": sorted(self.roles)},
            "scope": {"labels": dict(self.scope.labels), "nodes": self.scope.nodes, "programs": self.scope.programs},
            "run_as": sorted(self.run_as)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        if len(text) > MAX_POLICY_BYTES:
            raise PolicyError(f"a policy is limited to {MAX_POLICY_BYTES} bytes")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise PolicyError("a policy is a JSON object")
        version = data.get("version", POLICY_VERSION)
        if not isinstance(version, int) or isinstance(version, bool):
            raise PolicyError("the policy version is not a number")
        if version > POLICY_VERSION:
            raise PolicyError(f"policy version {version} is newer than this release understands")
        subjects = _mapping(data.get("subjects", {}), "subjects")
        scope = _mapping(data.get("scope", {}), "scope")
        return make(str(data.get("name", "")), _strings(data.get("verbs"), "verbs"),
                    users=_strings(subjects.get("users", []), "subjects.users"),
                    groups=_strings(subjects.get("groups", []), "subjects.groups"),
                    roles=_strings(subjects.get("roles", []), "subjects.roles"),
                    labels=_mapping(scope.get("labels", {}), "scope.labels"),
                    nodes=str(scope.get("nodes", "*")), programs=str(scope.get("programs", "*")),
                    run_as=_strings(data.get("run_as", []), "run_as"))


def make(name: str, verbs: Iterable[str], *, users: Iterable[str] = (), groups: Iterable[str] = (),
         roles: Iterable[str] = (), labels: Mapping[str, object] | None = None, nodes: str = "*",
         programs: str = "*", run_as: Iterable[str] = ()) -> Policy:
    """A checked Policy. Raises PolicyError naming what is wrong."""
    try:
        check_name("policy", name)
        users, groups = frozenset(users), frozenset(groups)
        for user in users:
            check_name("user", user)
        for group in groups:
            check_name("group", group)
        for key, value in (labels or {}).items():
            check_name("label", key)
            check_name("label value", str(value))
        for user in run_as:
            if user != ANY_USER:
                check_name("run_as user", user)
    except IdentityError as exc:
        raise PolicyError(str(exc)) from None
    verb_set = frozenset(verbs)
    if not verb_set or verb_set - _ALL:
        raise PolicyError(f"verbs must be some of {', '.join(VERBS)}; got {', '.join(sorted(verb_set)) or 'none'}")
    role_set = frozenset(roles)
    if role_set - {"operator", "viewer", "controller"}:
        raise PolicyError("roles may be operator, viewer or controller (agents only heartbeat)")
    if not (users or groups or role_set):
        raise PolicyError("a policy needs at least one subject: a user, a group or a role")
    for what, pattern in (("nodes", nodes), ("programs", programs)):
        if not pattern or len(pattern) > 200 or any(c.isspace() for c in pattern):
            raise PolicyError(f"scope.{what} must be a glob without spaces, at most 200 characters")
    scope = Scope(tuple(sorted((k, str(v)) for k, v in (labels or {}).items())), nodes, programs)
    return Policy(name, verb_set, users, groups, role_set, scope, frozenset(run_as))


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise PolicyError(f"{what} must be an object")
    return value


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{what} must be a list of strings")
    return value


def builtin_grants(identity: Identity) -> list[Grant]:
    role = identity.role
    if role in (LOCAL_ROLE, INSECURE_ROLE):
        return [Grant(CAPS[role], EVERYWHERE, frozenset({ANY_USER}), f"built-in: {role}")]
    if role == "controller":
        return [Grant(CAPS[role], EVERYWHERE, frozenset({ANY_USER}), "built-in: controllers")]
    if role == "agent":
        return [Grant(CAPS[role], Scope(nodes=identity.name), frozenset(), "built-in: an agent's own node")]
    if role == "viewer":
        return [Grant(frozenset({READ}), EVERYWHERE, frozenset(), "built-in: viewers")]
    if role == "operator" and ADMINS_GROUP in identity.groups:
        return [Grant(_ALL, EVERYWHERE, frozenset({ANY_USER}), f"built-in: group {ADMINS_GROUP}")]
    return []


class Authorizer:
    """The one decision: may this identity use this verb on this target? Pure and cheap: the
    grants of an identity are worked out once per policy set."""

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        self.policies = tuple(sorted(policies, key=lambda p: p.name))
        self._cache: dict[Identity, tuple[Grant, ...]] = {}

    def grants(self, identity: Identity) -> tuple[Grant, ...]:
        cached = self._cache.get(identity)
        if cached is None:
            cap = CAPS.get(identity.role, frozenset())
            found = builtin_grants(identity)
            found += [Grant(p.verbs & cap, p.scope, p.run_as, f"policy {p.name}")
                      for p in self.policies if p.applies_to(identity) and p.verbs & cap]
            cached = tuple(found)
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[identity] = cached
        return cached

    def may(self, identity: Identity, verb: str) -> bool:
        """Anywhere at all: the coarse check every RPC passes before its scope is known."""
        return any(verb in g.verbs for g in self.grants(identity))

    def everywhere(self, identity: Identity, verb: str) -> bool:
        """Unscoped: no need to look at targets one by one."""
        return any(verb in g.verbs and g.scope.everywhere for g in self.grants(identity))

    def allows(self, identity: Identity, verb: str, *, node: str | None = None,
               labels: Mapping[str, str] | None = None, program: tuple[str, str] | None = None,
               run_as: str | None = None) -> bool:
        """May `identity` use `verb` on a process (group, name) of a node? Leave out what the
        target does not have: a node-level call gives no program, a check of what a config
        would run gives run_as."""
        for grant in self.grants(identity):
            if verb not in grant.verbs:
                continue
            scope = grant.scope
            if node is not None and not scope.covers_node(node, labels or {}):
                continue
            if program is not None and not scope.covers_program(*program):
                continue
            if run_as is not None and not grant.may_run_as(run_as):
                continue
            return True
        return False

    def scopes(self, identity: Identity, verb: str) -> list[Grant]:
        return [g for g in self.grants(identity) if verb in g.verbs]


def denial(identity: Identity, verb: str, what: str = "") -> str:
    """The one line a refusal says: who, which verb, on what."""
    target = f" {what}" if what else ""
    return f"{identity} may not {verb}{target}: no policy grants it"


@dataclass
class PolicySet:
    """Policies and revoked serials as a controller pushes them to agents (and agents keep
    them in their state dir): `revision` is etcd's, so an agent asks only for newer ones."""
    revision: int = 0
    policies: list[Policy] = field(default_factory=list)
    revoked: dict[str, str] = field(default_factory=dict)  # serial (hex) -> what it was

    def to_json(self) -> str:
        return json.dumps({"version": POLICY_VERSION, "revision": self.revision,
                           "policies": [json.loads(p.to_json()) for p in self.policies],
                           "revoked": self.revoked}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PolicySet:
        try:
            data = json.loads(text)
            policies = [Policy.from_json(json.dumps(p)) for p in data.get("policies", [])][:MAX_POLICIES]
            revoked = {str(k): str(v) for k, v in dict(data.get("revoked", {})).items()}
            return cls(int(data.get("revision", 0)), policies, revoked)
        except (ValueError, TypeError, AttributeError) as exc:
            raise PolicyError(f"unreadable policy set: {exc}") from None
