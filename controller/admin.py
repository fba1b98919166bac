"""Administration of the fleet (verb admin): authorization policies, revoked certificates, and
forgetting nodes that are gone for good.

Everything here is a record in etcd, read from the mirror and written with compare-and-put:

    acl/<name>          Policy.to_json() (agent/security/policy.py)
    revoked/<serial>    RevocationRecord (records.py): {"serial", "name", "who", "time"}

Only writing them is done here; the controller that enforces them (and pushes them to agents)
follows the same keys.

Forgetting a node deletes its member record (`members/<node>`, so it leaves status, nodes and
config status, and this controller drops its link to it), its last reconcile record and what
operators said about it (`overrides/<node>`: an adoption or a pin). It
also takes the node out of every current config assignment that names it explicitly, so that
a later push or rollback of those configs, which reuses the assignment, does not name a node
that no longer exists; the stored revisions keep their history as it was. It is refused while
the node is up (its lease alive, i.e. its agent heartbeats). An agent that comes back under
the same name later registers afresh and gets what the assignments then say.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace

from fleetvisor.agent.security.identity import IdentityError, check_name
from fleetvisor.agent.security.policy import MAX_POLICIES, MAX_POLICY_BYTES, Policy, PolicyError

from . import records
from .errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from .membership import Membership
from .records import AssignmentRecord, RevocationRecord, Selector, decode, encode
from .store import Put, Store

log = logging.getLogger("fleetvisor.controller")

SERIAL_MAX = 40  # hex digits: X.509 serial numbers are at most 20 bytes
_HEX = re.compile(r"[0-9a-f]+")


def normalize_serial(text: str) -> str:
    """A certificate serial as identity.Identity.serial has it: lower-case hex without leading
    zeros. Accepts openssl's colon-separated form and a 0x prefix. Raises InvalidArgument."""
    digits = text.strip().lower().replace(":", "")
    digits = digits.removeprefix("0x")
    if not digits or len(digits) > SERIAL_MAX or not _HEX.fullmatch(digits):
        raise InvalidArgument(f"serial {text[:SERIAL_MAX * 2]!r} is not a certificate serial number: "
                              f"give up to {SERIAL_MAX} hex digits (e.g. 4a3f09c1)")
    return digits.lstrip("0") or "0"


def shown(name: str) -> str:
    """A name from a request, safe to put in a one-line message."""
    return name if name.isprintable() and len(name) <= 100 else repr(name[:100])


@dataclass(frozen=True)
class Revoked:
    record: RevocationRecord
    new: bool  # False: it was revoked already, and the record is the first one


class Admin:
    def __init__(self, store: Store, membership: Membership) -> None:
        self.store = store
        self.membership = membership

    # -- policies ----------------------------------------------------------------------------------

    def policies(self) -> list[Policy]:
        """The stored policies by name; one this release cannot read is left out (acl.py says so
        in the log, once: not once per listing)."""
        found = []
        for raw in self.store.items(records.ACL).values():
            try:
                found.append(Policy.from_json(raw))
            except PolicyError:
                pass
        return found

    async def set_policy(self, policy: Policy) -> str:
        """Store `policy`, replacing the one of its name; says "created", "replaced" or "unchanged"."""
        raw = policy.to_json().encode()
        if len(raw) > MAX_POLICY_BYTES:
            raise InvalidArgument(f"policy {policy.name} is {len(raw)} bytes stored; at most {MAX_POLICY_BYTES}")
        key = records.acl_key(policy.name)
        old = self.store.get(key)
        if old == raw:
            return "unchanged"
        if old is None and len(self.store.items(records.ACL)) >= MAX_POLICIES:
            raise FailedPrecondition(f"the fleet has {MAX_POLICIES} policies, the most it may have: delete one "
                                     "first (fleetctl acl delete NAME)")
        if not await self.store.compare_and_put([Put(key, raw)], {key: old}):
            raise Conflict(f"policy {policy.name} was changed at the same time; try again")
        return "created" if old is None else "replaced"

    async def delete_policy(self, name: str) -> None:
        key = records.acl_key(name)
        old = self.store.get(key)
        if old is None:
            raise NotFound(f"no such policy: {shown(name)}")
        if not await self.store.compare_and_put([], {key: old}, deletes=[key]):
            raise Conflict(f"policy {name} was changed at the same time; try again")

    # -- nodes -----------------------------------------------------------------------------------

    async def forget_node(self, name: str) -> list[str]:
        """Forget a node that is down (see the module's docstring); returns the configs whose
        assignments named it. Names are not checked for shape: a node registered before names
        were must still be removable."""
        member_key = records.member_key(name)
        member = self.store.get(member_key)
        if member is None:
            raise NotFound(f"no such node: {shown(name)}")
        self._refuse_if_up(name)
        # down by its heartbeats' age, its registration may outlive them until etcd expires the
        # lease: removed too, unless a heartbeat renews it meanwhile (then the compare fails)
        node_key = records.node_key(name)
        registration = self.store.get(node_key)
        expect: dict[str, bytes | None] = {member_key: member, node_key: registration}
        puts = []
        configs = []
        for key, raw in self.store.items(records.ASSIGNMENTS).items():
            assignment = decode(AssignmentRecord, raw)
            if assignment is None or name not in assignment.target().nodes:
                continue
            target = assignment.target()
            pruned = Selector(tuple(n for n in target.nodes if n != name), target.labels)
            puts.append(Put(key, encode(replace(assignment, selector=records.selector_data(pruned)))))
            expect[key] = raw
            configs.append(key[len(records.ASSIGNMENTS):])
        deletes = [member_key, records.reconcile_key(name), records.override_key(name)]
        if registration is not None:
            deletes.append(node_key)
        if not await self.store.compare_and_put(puts, expect, deletes=deletes):
            self._refuse_if_up(name)
            raise Conflict(f"node {name} or a config assigned to it changed at the same time; try again")
        log.info("node %s forgotten%s", name, f"; taken out of the assignments of {', '.join(configs)}"
                 if configs else "")
        return configs

    def _refuse_if_up(self, name: str) -> None:
        if self.membership.is_up(name):
            raise FailedPrecondition(f"node {name} is up (its agent heartbeats): stop the agent, and forget the "
                                     f"node once `fleetctl nodes` shows it DOWN (within {self.membership.node_ttl}s)")

    # -- revoked certificates --------------------------------------------------------------------

    async def revoke(self, serial: str, name: str, who: str) -> Revoked:
        """Record certificate `serial` as revoked; revoking it again changes nothing."""
        serial = normalize_serial(serial)
        if name:
            try:
                check_name("certificate", name)
            except IdentityError as exc:
                raise InvalidArgument(str(exc)) from None
        key = records.revoked_key(serial)
        old = decode(RevocationRecord, self.store.get(key))
        if old is not None:
            return Revoked(old, False)
        record = RevocationRecord(serial=serial, name=name, who=who, time=time.time())
        if not await self.store.compare_and_put([Put(key, encode(record))], {key: None}):
            raise Conflict(f"certificate {serial} was revoked at the same time; see fleetctl certs revoked")
        return Revoked(record, True)

    def revocations(self) -> list[RevocationRecord]:
        """Every revoked certificate, oldest first."""
        found = [r for raw in self.store.items(records.REVOKED).values()
                 if (r := decode(RevocationRecord, raw)) is not None]
        return sorted(found, key=lambda r: (r.time, r.serial))
