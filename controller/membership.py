"""Which nodes belong to the fleet: their registrations, their leases, and what they run.

`members/<node>` keeps every node ever registered (a silent node is shown down, not
forgotten); `nodes/<node>` is the node's registration, bound to the lease of the controller it
heartbeats to (registrations.py), and removed when the node falls silent.

A heartbeat is not an etcd write: `nodes/<node>` is written when the node registers with a
controller (first, again after it was silent, or at another controller), `members/<node>` when
what the node says of itself changes. Every controller knows a node is up from its copy of
etcd; the time of the last heartbeat is known exactly only where it arrived.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from . import audit, records
from .errors import InvalidArgument
from .mirror import Change
from .records import MemberRecord, NodeRecord, decode, encode
from .registrations import RegistrationLease, SilenceWatch, pace
from .store import Put, Store

log = logging.getLogger("fleetvisor.controller")


@dataclass(frozen=True)
class Heartbeat:
    """What an agent says about itself each time it checks in."""

    node: str
    address: str  # its gRPC face, as announced (the host may be a wildcard)
    labels: dict[str, str] = field(default_factory=dict)
    agent_version: str = ""
    applied_revision: str = ""
    run_id: str = ""
    started_at: float = 0.0
    edited_by_hand: bool = False
    cluster_id: str = ""
    local_revision: bool = False
    local_sections: tuple[str, ...] = ()  # program-level sections of the node's own files


def dial_address(announced: str, peer_host: str) -> str:
    """Where to reach an agent: its announced address, with a wildcard or empty host replaced by
    the address its heartbeat came from."""
    host, _, port = announced.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::") and peer_host:
        host = peer_host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Membership:
    def __init__(self, store: Store, controller_id: str, node_ttl: int, max_heartbeat_rate: float = 0) -> None:
        """`max_heartbeat_rate`: heartbeats a second this controller asks for at most (0: no
        bound); past it, the nodes are told to heartbeat less often (registrations.pace)."""
        self.store = store
        self.controller_id = controller_id
        self.node_ttl = node_ttl
        self.max_heartbeat_rate = max_heartbeat_rate
        self.lease = RegistrationLease(store.client, node_ttl)
        self._heard: dict[str, float] = {}  # heartbeats this controller recorded, by node
        self._told: dict[str, float] = {}  # the TTL told to each node registered here (see pace)
        self._gone: dict[str, float] = {}  # for nodes whose key expired: about when they were last heard
        self._applied_here: dict[str, str] = {}  # see applied()
        self._pushed_here: set[str] = set()  # see local()
        self._decoded: dict[str, tuple[bytes | None, MemberRecord]] = {}  # see _decode()
        self._members: tuple[tuple[int, ...], dict[str, MemberRecord]] = ((), {})  # see members()
        self._address_of: dict[str, str] = {}  # member -> its address, and the reverse: see _place()
        self._by_address: dict[str, set[str]] = {}
        self._indexed = False
        self._silence = SilenceWatch(store, controller_id, self._due, self.lease)

    async def close(self) -> None:
        await self._silence.close()
        await self.lease.close()

    def on_mirror(self, changes: list[Change]) -> bool:
        """Follow the mirror; True when the set or the addresses of members may have changed
        (nothing else of a member decides which links there are and who follows them)."""
        members_changed = self._index()
        for change in changes:
            if change.key.startswith(records.NODES):
                name = change.key[len(records.NODES):]
                if change.value is None:  # the lease expired: its last renewal was about a TTL ago
                    self._gone[name] = max(self._heard.get(name, 0.0), time.time() - self.ttl_of(name))
                    self._told.pop(name, None)
                else:
                    self._gone.pop(name, None)
                    record = decode(NodeRecord, change.value)
                    if record is None or record.controller_id != self.controller_id:
                        self._told.pop(name, None)  # it heartbeats to another controller now
            elif change.key.startswith(records.MEMBERS):  # the node's own word replaces ours
                name = change.key[len(records.MEMBERS):]
                self._applied_here.pop(name, None)
                self._pushed_here.discard(name)
                if change.value is None:  # forgotten (admin.py): nothing of it stays here
                    self._heard.pop(name, None)
                    self._gone.pop(name, None)
                    self._told.pop(name, None)
                member = self._decode(name, change.value) if change.value is not None else None
                # a heartbeat's new applied revision rewrites the record too: during a push that is
                # every node, and re-sharing the links for each was O(nodes) per node
                members_changed |= self._place(name, member.address if member is not None else None)
        return members_changed

    def _index(self) -> bool:
        """Build the address index from the copy once (the mirror may have loaded before this
        followed it); True when it was built now."""
        if self._indexed:
            return False
        self._indexed = True
        for name, member in self.members().items():
            self._place(name, member.address)
        return True

    def _place(self, name: str, address: str | None) -> bool:
        """Keep the index of members by address (None: no longer a member); True when the
        node's address, or its being a member, changed."""
        old = self._address_of.get(name)
        if old == address:
            return False
        if old is not None:
            names = self._by_address[old]
            names.discard(name)
            if not names:
                del self._by_address[old]
        if address is None:
            del self._address_of[name]
        else:
            self._address_of[name] = address
            self._by_address.setdefault(address, set()).add(name)
        return True

    def at_address(self, address: str) -> set[str]:
        """The members last known at `address`, from the index (not a scan of every member)."""
        self._index()
        return set(self._by_address.get(address, ()))

    # -- reading ---------------------------------------------------------------------------------

    def members(self) -> dict[str, MemberRecord]:
        """Every member, by name, decoded once per value (see member()); worked out again only
        after a member record changed (a status of thousands of nodes reads them each call)."""
        generation = self.store.mirror.generation(records.MEMBERS)
        if self._members[0] != generation:
            self._members = generation, self._read_members()
        return dict(self._members[1])

    def _read_members(self) -> dict[str, MemberRecord]:
        result = {}
        for key, raw in self.store.items(records.MEMBERS).items():
            name = key[len(records.MEMBERS):]
            member = self._decode(name, raw)
            if member is not None:
                result[name] = member
        if len(self._decoded) > len(result):  # forgotten (or now unreadable) members
            for name in self._decoded.keys() - result.keys():
                del self._decoded[name]
        return dict(sorted(result.items()))

    def member(self, name: str) -> MemberRecord | None:
        return self._decode(name, self.store.get(records.member_key(name)))

    def _decode(self, name: str, raw: bytes | None) -> MemberRecord | None:
        """A member record, decoded once per value: members are read on every reconcile pass,
        status and config status call, and decoding thousands of records each time was most of
        the controller's CPU at a few hundred nodes (seen with benchmarks/simulator)."""
        hit = self._decoded.get(name)
        if hit is not None and hit[0] == raw:
            return hit[1]
        member = decode(MemberRecord, raw)
        if member is not None:
            self._decoded[name] = (raw, member)
        return member

    def node_record(self, name: str) -> NodeRecord | None:
        return decode(NodeRecord, self.store.get(records.node_key(name)))

    def last_alive(self, name: str, now: float | None = None) -> float:
        """When the node was last known to heartbeat (0: never seen). Exact where the heartbeat
        arrived; elsewhere, while its lease-bound key is in this controller's copy, the time the
        copy was last current (a heartbeat came within the TTL before it)."""
        now = time.time() if now is None else now
        heard = self._heard.get(name, 0.0)
        if not self._registered(name):
            return max(heard, self._gone.get(name, 0.0))
        mirror = self.store.mirror
        return max(heard, now if mirror.connected else mirror.lost_at)

    def is_up(self, name: str, now: float | None = None) -> bool:
        """Registered and heard from within the TTL. The key alone is not enough: while etcd is
        away nothing expires the lease, and this controller's copy keeps the key."""
        now = time.time() if now is None else now
        return self._registered(name) and now - self.last_alive(name, now) <= self.ttl_of(name)

    def ttl_of(self, name: str) -> float:
        """The TTL the node was told, if it heartbeats here; else the node TTL."""
        return self._told.get(name, self.node_ttl)

    def _due(self, name: str) -> tuple[float, float]:
        """When the node registered here is silent for its TTL, and that TTL (registrations.py)."""
        ttl = self.ttl_of(name)
        return self._heard.get(name, 0.0) + ttl, ttl

    def _registered(self, name: str) -> bool:
        """Whether the node's lease-bound key is in this controller's copy (its value unread)."""
        return self.store.get(records.node_key(name)) is not None

    def select(self, labels: dict[str, str]) -> dict[str, MemberRecord]:
        return {n: m for n, m in self.members().items() if records.labels_match(m.labels, labels)}

    def applied(self, member: MemberRecord) -> str:
        """What the node runs, as its heartbeats say; right after this controller applied a
        revision there, that one until the node's next heartbeat reports anything."""
        return self._applied_here.get(member.name, member.applied_revision)

    def applied_revision(self, name: str) -> str:
        member = self.member(name)
        return self.applied(member) if member is not None else ""

    def local(self, member: MemberRecord) -> bool:
        """Whether the node runs a revision applied per node; not right after this controller
        applied one there, until the node's next heartbeat."""
        return member.local_revision and member.name not in self._pushed_here

    def note_applied(self, name: str, revision: str) -> None:
        self._applied_here[name] = revision
        self._pushed_here.add(name)

    # -- heartbeats ------------------------------------------------------------------------------

    async def heartbeat(self, beat: Heartbeat, peer_host: str, who: str = "") -> tuple[float, float]:
        """Record the node (members/) and its registration here (nodes/), each only if it changed,
        and the time; return the heartbeat interval and TTL to tell it (registrations.pace). A new
        address of a known node, or one another live node uses, is logged and audited."""
        name = beat.node
        old = self.member(name)
        address = dial_address(beat.address, peer_host)
        if (old is not None and old.address != address and old.run_id != beat.run_id
                and self.is_up(name)):
            raise InvalidArgument(f"node name {name} is in use by the agent at {old.address}: give this agent "
                                  "another node name in [fleetvisor]")
        if old is None or old.address != address:
            await self._note_address(name, old.address if old else "", address, who)
        member = MemberRecord(
            name=name, address=address, labels=dict(beat.labels), agent_version=beat.agent_version,
            started_at=beat.started_at, run_id=beat.run_id, applied_revision=beat.applied_revision,
            edited_by_hand=beat.edited_by_hand, first_seen=old.first_seen if old else time.time(),
            cluster_id=beat.cluster_id, local_revision=beat.local_revision,
            local_sections=list(beat.local_sections))
        record = self.node_record(name)
        lease = await self.lease.get()
        puts = []
        if record is None or record.lease != lease or record.controller_id != self.controller_id:
            puts.append(Put(records.node_key(name), encode(NodeRecord(lease, time.time(), self.controller_id)),
                            lease))
        if member != old:
            puts.append(Put(records.member_key(name), encode(member)))
            if old is None:
                log.info("node %s registered from %s", name, member.address)
        if puts:
            await self.store.compare_and_put(puts, visible=False)
        self._heard[name] = now = time.time()
        interval, ttl = pace(len(self._told) + (name not in self._told), self.node_ttl, self.max_heartbeat_rate)
        self._told[name] = ttl
        self._silence.note(name, now + ttl)
        return interval, ttl

    async def _note_address(self, name: str, old: str, new: str, who: str) -> None:
        notes = []
        if old:
            notes.append(("node.address", f"node {name} moved from {old} to {new}"))
        others = sorted(n for n in self.at_address(new) if n != name and self.is_up(n))
        if others:
            notes.append(("node.address-conflict",
                          f"node {name} claims address {new}, which live node {others[0]} uses"))
        for action, text in notes:
            log.warning("%s (heartbeat from %s)", text, who or "unknown")
            await audit.record(self.store.client, self.store.prefix, audit.entry(
                who, action, {"node": name, "old": old, "new": new}, not others, text, self.controller_id))
