"""The controller's live policies and revoked certificates, followed from etcd.

`acl/<name>` holds a Policy's JSON and `revoked/<serial>` a revocation; the admin RPCs write
them. Every change replaces the gate's Authorizer and revoked serials at once, so the next
call is judged by the new state, and keeps the PolicySet that heartbeat answers hand agents.
"""

from __future__ import annotations

import json
import logging

from fleetvisor.agent.security.guard import Gate
from fleetvisor.agent.security.policy import MAX_POLICIES, Authorizer, Policy, PolicyError, PolicySet

from .mirror import Change, Mirror
from .records import ACL, REVOKED

log = logging.getLogger("fleetvisor.controller")


def parse(entries: dict[str, bytes], bad: set[str]) -> tuple[list[Policy], dict[str, str]]:
    """Policies and revocations from the mirror's keys. A record that does not parse is logged
    once per key (never its value, which an admin wrote) and skipped; `bad` remembers them."""
    policies: list[Policy] = []
    revoked: dict[str, str] = {}
    for key, raw in entries.items():
        try:
            if key.startswith(ACL):
                policy = Policy.from_json(raw)
                if policy.name != key[len(ACL):]:
                    raise PolicyError(f"it names policy {policy.name!r}")
                policies.append(policy)
            elif key.startswith(REVOKED):
                data = json.loads(raw)
                serial = key[len(REVOKED):].lower()
                revoked[serial] = str(data.get("name", "")) if isinstance(data, dict) else ""
            bad.discard(key)
        except (PolicyError, ValueError) as exc:
            if key not in bad:
                bad.add(key)
                reason = str(exc) if isinstance(exc, PolicyError) else "not JSON"
                log.error("ignoring %s in etcd: %s", key, reason.splitlines()[0][:200])
    if len(policies) > MAX_POLICIES:
        log.error("%d policies in etcd; only the first %d (by name) are used", len(policies), MAX_POLICIES)
        policies = sorted(policies, key=lambda p: p.name)[:MAX_POLICIES]
    return policies, revoked


class Acl:
    """Keeps `gate.authorizer`, `gate.revoked` and `state` current with etcd."""

    def __init__(self, mirror: Mirror, gate: Gate) -> None:
        self.mirror = mirror
        self.gate = gate
        self.state = PolicySet()
        self._bad: set[str] = set()

    def start(self) -> None:
        """Load what the mirror holds and follow it from then on (for the mirror's lifetime)."""
        self._load(self.mirror.revision)
        self.mirror.subscribe(self._on_mirror)

    def _on_mirror(self, changes: list[Change]) -> None:
        touched = [c for c in changes if c.key.startswith((ACL, REVOKED))]
        if touched:
            self._load(max(c.revision for c in touched))

    def _load(self, revision: int) -> None:
        entries = {**self.mirror.items(ACL), **self.mirror.items(REVOKED)}
        policies, revoked = parse(entries, self._bad)
        self._bad &= entries.keys()
        self.gate.authorizer = Authorizer(policies)
        self.gate.revoke(revoked)
        self.state = PolicySet(revision, policies, revoked)
        log.info("security state at etcd revision %d: %d policies, %d revoked certificates",
                 revision, len(policies), len(revoked))
