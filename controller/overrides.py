"""The cluster identity, and what operators say about single nodes (adopt, pin, unpin).

`cluster-id` is made once per store by whichever controller starts first (a create-if-absent
transaction); every controller on the store reads the same one. `overrides/<node>` holds an
operator's adoption or pin of a node, so that every controller agrees, and the foreign reason
and local revision the leader last logged and audited, so that each change is said once.
The rules that use them are in nodepolicy.py.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import replace

from . import audit, records
from .errors import FailedPrecondition, NotFound
from .membership import Membership
from .nodepolicy import NodeFacts, foreign_reason
from .records import ClusterRecord, MemberRecord, OverrideRecord, decode, encode
from .store import Put, Store

log = logging.getLogger("fleetvisor.controller")


async def ensure_cluster_id(store: Store, controller_id: str) -> str:
    """This store's cluster identity, made here if the store has none yet."""
    made = ClusterRecord(id=secrets.token_hex(16), created_at=time.time(), created_by=controller_id)
    if await store.compare_and_put([Put(records.CLUSTER_ID, encode(made))], {records.CLUSTER_ID: None}):
        log.info("new cluster identity %s made for this store", made.id)
        return made.id
    found = decode(ClusterRecord, store.get(records.CLUSTER_ID))
    if found is None or not found.id:
        got = await store.client.get(store.key(records.CLUSTER_ID))
        found = decode(ClusterRecord, got.value if got is not None else None)
    if found is None or not found.id:
        raise RuntimeError(f"the store's {records.CLUSTER_ID} key does not hold a cluster identity")
    return found.id


def held_reason(node: str, override: OverrideRecord, foreign: str) -> str:
    """Overrides.held, from the node's override record and why it is foreign."""
    if override.pinned:
        return f"{node} is pinned: unpin it first (fleetctl nodes unpin {node})"
    return f"{node} is foreign ({foreign}): adopt it first (fleetctl nodes adopt {node})" if foreign else ""


class Overrides:
    def __init__(self, store: Store, membership: Membership, cluster_id: str = "") -> None:
        self.store = store
        self.membership = membership
        self.cluster_id = cluster_id
        self._records = records.Decoded(OverrideRecord)

    # -- reading ---------------------------------------------------------------------------------

    def record(self, node: str) -> OverrideRecord:
        key = records.override_key(node)
        return self._records.get(key, self.store.get(key)) or OverrideRecord()

    def facts(self, member: MemberRecord) -> NodeFacts:
        return NodeFacts(applied=self.membership.applied(member), cluster_id=member.cluster_id,
                         local=self.membership.local(member))

    def missing(self, name: str, revision: int) -> str:
        if self.store.get(records.revision_key(name, revision)) is not None:
            return ""
        if not self.store.items(records.revisions_prefix(name)):
            return f"no config {name}"
        return f"config {name} has no revision {revision}"

    def foreign(self, member: MemberRecord, override: OverrideRecord | None = None) -> str:
        return foreign_reason(self.cluster_id, self.facts(member),
                              self.missing, override if override is not None else self.record(member.name))

    # -- writing ---------------------------------------------------------------------------------

    def held(self, node: str) -> str:
        """Why nothing is pushed to `node` whatever its desired revision ("" when it gets it):
        foreign until adopted, or pinned. A rollout fails such a node at once."""
        member = self.membership.member(node)
        if member is None:
            return ""
        override = self.record(node)
        return held_reason(node, override, "" if override.pinned else self.foreign(member, override))

    async def update(self, node: str, **fields: object) -> OverrideRecord:
        key = records.override_key(node)
        while True:
            raw = self.store.get(key)
            new = replace(decode(OverrideRecord, raw) or OverrideRecord(), **fields)  # type: ignore[arg-type]
            if await self.store.compare_and_put([Put(key, encode(new))], {key: raw}):
                return new

    def _member(self, node: str) -> MemberRecord:
        member = self.membership.member(node)
        if member is None:
            raise NotFound(f"no such node: {node}")
        return member

    async def adopt(self, node: str, keep: bool, desired: str, who: str) -> str:
        """Take a foreign node into this cluster; returns what was done, in one line."""
        member = self._member(node)
        override = self.record(node)
        reason = foreign_reason(self.cluster_id, self.facts(member), self.missing,
                                replace(override, adopted=False))
        if not reason:
            raise FailedPrecondition(f"node {node} is not foreign: nothing to adopt")
        applied = self.membership.applied(member)
        await self.update(node, adopted=True, adopted_from=member.cluster_id, adopted_applied=applied,
                          kept_revision=(applied or "none") if keep else "", kept_desired=desired if keep else "",
                          adopted_by=who, adopted_at=time.time(), noted_foreign="")
        if keep:
            return f"node {node} adopted: its revision {applied or 'none'} is kept, nothing pushed"
        return f"node {node} adopted: it gets {desired or 'no config'} from this store"

    async def pin(self, node: str, reason: str, who: str) -> str:
        self._member(node)
        await self.update(node, pinned=True, pinned_by=who, pinned_at=time.time(), pin_reason=reason)
        return f"node {node} pinned: the controller pushes nothing to it until `fleetctl nodes unpin {node}`"

    async def unpin(self, node: str, who: str) -> str:
        self._member(node)
        if not self.record(node).pinned:
            raise FailedPrecondition(f"node {node} is not pinned")
        await self.update(node, pinned=False, pinned_by="", pinned_at=0.0, pin_reason="")
        return f"node {node} unpinned: the controller reconciles it again"

    async def note(self, node: str, override: OverrideRecord, foreign: str, drift: str, controller_id: str) -> None:
        """Log and audit a change of the node's foreign reason or local revision, once."""
        if foreign == override.noted_foreign and drift == override.noted_drift:
            return
        notes = []
        if foreign != override.noted_foreign:
            if foreign:
                notes.append(("node.foreign", False, f"node {node} is foreign: {foreign}; nothing is pushed to it "
                              f"until `fleetctl nodes adopt {node} [--keep]`"))
            else:
                notes.append(("node.foreign", True, f"node {node} is no longer foreign"))
        if drift != override.noted_drift:
            if drift:
                notes.append(("node.drift", False,
                              f"node {node} runs per-node revision {drift} (applied with --force)"))
            else:
                notes.append(("node.drift", True, f"node {node} no longer runs a per-node revision"))
        await self.update(node, noted_foreign=foreign, noted_drift=drift)
        for action, ok, text in notes:
            (log.info if ok else log.warning)("%s", text)
            await audit.record(self.store.client, self.store.prefix, audit.entry(
                "controller " + controller_id, action, {"node": node}, ok, text, controller_id))
