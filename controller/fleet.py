"""The controller's core: the fleet as etcd and the agents describe it, and every change to it.

Reads come from the etcd mirror (desired state, membership) and the node links (live process
state); writes go to etcd in transactions and are visible in the mirror before a call returns.
The gRPC service, the reconciler and the fan-out are thin users of this class.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace

import aetcd
import grpc
from google.protobuf import json_format

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb

from . import configs, records, selection
from .configs import ConfigRejected, Current, Desired
from .livestate import NodeLink
from .mirror import Change, Mirror
from .records import (AssignmentRecord, MemberRecord, NodeRecord, ReconcileRecord, RevisionRecord, Selector,
                      decode, encode)

log = logging.getLogger("fleetvisor.controller")

# Plans a rollout: (target nodes, new revision, previous revision) -> the Operation to store
RolloutPlanner = Callable[[list[str], int, int], pb.Operation]

NO_CONFIG = "none"  # the revision id of an empty fleet file, sent when a node's last config is unassigned


class NotFound(Exception):
    """An unknown node, process or config; the message is for the operator."""


def same_revision(desired: str, applied: str) -> bool:
    return (desired or NO_CONFIG) == (applied or NO_CONFIG)


def dial_address(announced: str, peer_host: str) -> str:
    """Where to reach an agent: its announced address, with a wildcard or empty host replaced by
    the address its heartbeat came from."""
    host, _, port = announced.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::") and peer_host:
        host = peer_host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Fleet:
    def __init__(self, client: aetcd.Client, mirror: Mirror, controller_id: str, *, node_ttl: int,
                 agent_credentials: grpc.ChannelCredentials | None) -> None:
        self.client = client
        self.mirror = mirror
        self.prefix = mirror.prefix
        self.id = controller_id
        self.node_ttl = node_ttl
        self.agent_credentials = agent_credentials
        self.links: dict[str, NodeLink] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._applied_here: dict[str, str] = {}  # see applied()
        self._leases: dict[str, int] = {}
        # last heartbeat per node as seen in etcd; kept after the lease (and its key) expired
        self._last_heartbeat: dict[str, float] = {}
        self._changed = asyncio.Event()
        self.changes = 0  # counts changes; see wait_change
        self._listeners: list[Callable[[], None]] = []
        mirror.subscribe(self._on_mirror)

    # -- bookkeeping -------------------------------------------------------------------------

    def key(self, relative: str) -> bytes:
        return (self.prefix + relative).encode()

    def start(self) -> None:
        for key, raw in self.mirror.items(records.NODES).items():
            self._note_heartbeat(key, raw)
        self._sync_links()

    def _note_heartbeat(self, key: str, raw: bytes | None) -> None:
        record = decode(NodeRecord, raw)
        if record is not None:
            self._last_heartbeat[key[len(records.NODES):]] = record.last_heartbeat

    async def close(self) -> None:
        links, self.links = self.links, {}
        await asyncio.gather(*(link.close() for link in links.values()))

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call back (on the loop) whenever membership, desired or live state changed."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        self.changes += 1
        self._changed.set()
        self._changed = asyncio.Event()
        for callback in self._listeners:
            callback()

    async def wait_change(self, timeout: float, since: int | None = None) -> None:
        """Until the next change, or the first one after `since` (a value of `changes`, so that
        a change made while the caller was busy is not missed), or `timeout` seconds."""
        if since is not None and self.changes != since:
            return
        try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel of the caller
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass

    def _on_mirror(self, changes: list[Change]) -> None:
        for change in changes:
            if change.key.startswith(records.NODES):
                self._note_heartbeat(change.key, change.value)
            elif change.key.startswith(records.MEMBERS):  # the node's own word replaces ours
                self._applied_here.pop(change.key[len(records.MEMBERS):], None)
        if any(c.key.startswith(records.MEMBERS) for c in changes):
            self._sync_links()
        self._notify()

    def _sync_links(self) -> None:
        """One link per member, dialled at its current address."""
        members = self.members()
        for name in list(self.links):
            member = members.get(name)
            if member is None or member.address != self.links[name].address:
                closing = asyncio.create_task(self.links.pop(name).close())
                self._closing.add(closing)  # held until done: the loop keeps only weak references
                closing.add_done_callback(self._closing.discard)
        for name, member in members.items():
            if name not in self.links and member.address:
                link = NodeLink(name, member.address, self.agent_credentials, lambda _link: self._notify())
                self.links[name] = link
                link.start()

    # -- reading the mirror ------------------------------------------------------------------

    def members(self) -> dict[str, MemberRecord]:
        result = {}
        for key, raw in self.mirror.items(records.MEMBERS).items():
            member = decode(MemberRecord, raw)
            if member is not None:
                result[key[len(records.MEMBERS):]] = member
        return dict(sorted(result.items()))

    def node_record(self, name: str) -> NodeRecord | None:
        return decode(NodeRecord, self.mirror.get(records.node_key(name)))

    def reconcile_record(self, name: str) -> ReconcileRecord:
        return decode(ReconcileRecord, self.mirror.get(records.reconcile_key(name))) or ReconcileRecord()

    def current_configs(self) -> dict[str, Current]:
        return configs.current_configs({**self.mirror.items(records.ASSIGNMENTS),
                                        **self.mirror.items(records.CONFIGS)})

    def desired(self, member: MemberRecord, current: dict[str, Current] | None = None) -> Desired:
        return configs.desired_for(member, (self.current_configs() if current is None else current).values())

    def applied(self, member: MemberRecord) -> str:
        """What the node runs, as its heartbeats say; right after this controller applied a
        revision there, that one until the node's next heartbeat reports anything."""
        return self._applied_here.get(member.name, member.applied_revision)

    def applied_revision(self, name: str) -> str:
        member = decode(MemberRecord, self.mirror.get(records.member_key(name)))
        return self.applied(member) if member is not None else ""

    def select_nodes(self, labels: dict[str, str]) -> dict[str, MemberRecord]:
        return {n: m for n, m in self.members().items() if records.labels_match(m.labels, labels)}

    # -- membership --------------------------------------------------------------------------

    async def heartbeat(self, request: pb.HeartbeatRequest, peer_host: str) -> None:
        """Record the node (members/), and renew its lease-bound registration (nodes/)."""
        name = request.node
        old = decode(MemberRecord, self.mirror.get(records.member_key(name)))
        address = dial_address(request.address, peer_host)
        if (old is not None and old.address != address and old.run_id != request.agent_run_id
                and self.node_record(name) is not None):
            raise ConfigRejected(f"node name {name} is in use by the agent at {old.address}: give this agent "
                                 "another node name in [fleetvisor]")
        member = MemberRecord(
            name=name, address=address, labels=dict(request.labels),
            agent_version=request.agent_version, started_at=request.started_at, run_id=request.agent_run_id,
            applied_revision=request.applied_revision, edited_by_hand=request.edited_by_hand,
            first_seen=old.first_seen if old else time.time())
        lease = await self._renew_lease(name)
        ops = [self.client.transactions.put(self.key(records.node_key(name)),
                                            encode(NodeRecord(lease, time.time(), self.id)), lease=lease)]
        if member != old:
            ops.append(self.client.transactions.put(self.key(records.member_key(name)), encode(member)))
            if old is None:
                log.info("node %s registered from %s", name, member.address)
        await self.client.transaction(compare=[], success=ops, failure=[])

    async def _renew_lease(self, name: str) -> int:
        record = self.node_record(name)
        lease = self._leases.get(name) or (record.lease if record else 0)
        if lease:
            reply = await self.client.refresh_lease(lease)
            if reply is not None and reply.TTL > 0:
                self._leases[name] = lease
                return lease
        granted = await self.client.lease(self.node_ttl)
        self._leases[name] = granted.id
        return granted.id

    # -- status ------------------------------------------------------------------------------

    def node_info(self, member: MemberRecord, current: dict[str, Current]) -> pb.NodeInfo:
        record = self.node_record(member.name)
        link = self.links.get(member.name)
        reachable = bool(link and link.reachable)
        error = link.error if link and not reachable else ""
        reconcile = self.reconcile_record(member.name)
        desired = self.desired(member, current).revision
        if not error and reconcile.last_error and not same_revision(desired, self.applied(member)):
            error = f"config not applied: {reconcile.last_error}"
        return pb.NodeInfo(
            name=member.name, address=member.address, labels=member.labels, agent_version=member.agent_version,
            up=record is not None, reachable=reachable, last_heartbeat=self._last_heartbeat.get(member.name, 0),
            state_as_of=time.time() if reachable else (link.state_as_of if link else 0),
            applied_revision=self.applied(member), desired_revision=desired, error=error,
            started_at=member.started_at, edited_by_hand=member.edited_by_hand)

    def pick(self, patterns: list[str], labels: dict[str, str]) -> list[tuple[MemberRecord, list[apb.ProcessInfo]]]:
        """The nodes and processes that patterns and labels select. An exact node name that is not
        a member, or a process pattern that matches nothing on any node that has data, is NotFound."""
        try:
            parsed = selection.parse_all(patterns)
        except selection.SelectionError as exc:
            raise NotFound(str(exc)) from None
        members = self.members()
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
            procs = []
            for proc in (link.snapshot() if link else []):
                wanted = [i for i in hits if parsed[i].matches_process(proc.group, proc.name)]
                for i in wanted:
                    matched[i] = True
                if wanted:
                    procs.append(proc)
            has_data = link is not None and link.info is not None
            if any(parsed[i].spec == "*" for i in hits) or not has_data:
                for i in hits:
                    matched[i] = matched[i] or parsed[i].spec == "*" or not has_data
            chosen.append((member, sorted(procs, key=lambda p: p.namespec)))
        for i, p in enumerate(parsed):
            if not matched[i] and p.spec != "*":
                raise NotFound(f"no such process: {patterns[i]}")
        return chosen

    def status(self, patterns: list[str], labels: dict[str, str]) -> pb.FleetStatus:
        current = self.current_configs()
        return pb.FleetStatus(
            nodes=[pb.NodeProcesses(node=self.node_info(member, current), processes=procs)
                   for member, procs in self.pick(patterns, labels)],
            now=time.time(), controller_id=self.id)

    def nodes(self, labels: dict[str, str]) -> list[pb.NodeInfo]:
        current = self.current_configs()
        return [self.node_info(m, current) for m in self.select_nodes(labels).values()]

    # -- config revisions --------------------------------------------------------------------

    def _check_selector(self, selector: Selector) -> list[str]:
        """The member names a selector means; unknown names or labels nobody has are refused."""
        members = self.members()
        unknown = [n for n in selector.nodes if n not in members]
        if unknown:
            raise ConfigRejected(f"unknown node(s): {', '.join(unknown)} "
                                 f"(known: {', '.join(members) or 'none registered yet'})")
        targets = [n for n, m in members.items() if selector.matches(m)]
        if selector.labels and not any(records.labels_match(m.labels, selector.labels) for m in members.values()):
            wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.labels.items()))
            raise ConfigRejected(f"no node has the label(s) {wanted}")
        return targets

    async def push(self, name: str, text: str, selector: Selector, message: str, author: str, *,
                   rollback_of: int = 0, rollout: RolloutPlanner | None = None) -> tuple[int, list[str], bool, str]:
        """Store `text` as the next revision of config `name` (or nothing, if it is the current one).
        With `rollout`, the nodes keep the previous revision until the rollout operation it plans
        (stored in the same transaction) reaches them. Returns (revision, target nodes, unchanged,
        operation id). Raises ConfigRejected."""
        configs.check_name(name)
        assignment_raw = self.mirror.get(records.assignment_key(name))
        current = decode(AssignmentRecord, assignment_raw)
        pinned = current.active_rollout() if current is not None else None
        if pinned is not None and self._operation_live(pinned.op):
            raise ConfigRejected(f"a rollout of {name} is in progress (operation {pinned.op}): let it finish "
                                 f"or abort it first (fleetctl ops abort {pinned.op})")
        if selector.empty:
            if current is None:
                raise ConfigRejected(f"config {name} is new: say where it goes (--nodes or --label)")
            selector = current.target()
        targets = self._check_selector(selector)
        self._validate_on_targets(name, text, targets)
        history = configs.revisions_of(self.mirror.items(records.revisions_prefix(name)), name)
        if current is not None and current.target() == selector and history.get(current.revision) \
                and history[current.revision].text == text and not rollback_of:
            return current.revision, targets, True, ""
        number = max(history, default=0) + 1
        now = time.time()
        revision = RevisionRecord(text=text, author=author, message=message, created_at=now,
                                  sha256=configs.sha256(text), selector=records.selector_data(selector),
                                  rollback_of=rollback_of)
        pin: dict[str, object] = {}
        tx = self.client.transactions
        extra = []
        op_id = ""
        if rollout is not None:
            op = rollout(targets, number, current.revision if current else 0)
            op_id = op.id
            pin = {"op": op.id, "previous": current.revision if current else 0, "done": []}
            extra.append(tx.put(self.key(records.op_key(op.id)), json_format.MessageToJson(op).encode()))
        assignment = AssignmentRecord(number, records.selector_data(selector), now, pin)
        akey = self.key(records.assignment_key(name))
        guard = tx.create(akey) == 0 if assignment_raw is None else tx.value(akey) == assignment_raw
        ok, responses = await self.client.transaction(
            compare=[tx.create(self.key(records.revision_key(name, number))) == 0, guard],
            success=[tx.put(self.key(records.revision_key(name, number)), encode(revision)),
                     tx.put(akey, encode(assignment)), *extra],
            failure=[])
        if not ok:
            raise ConfigRejected(f"config {name} was changed by someone else at the same time; try again")
        try:  # answer once this controller's own reads show the new revision
            await self.mirror.wait_revision(responses[-1].response_put.header.revision, timeout=10)
        except TimeoutError:
            log.warning("config %s revision %d is stored but not yet visible here", name, number)
        log.info("config %s revision %d stored by %s: %s%s", name, number, author, message,
                 f" (rolled out by operation {op_id})" if op_id else "")
        return number, targets, False, op_id

    def _operation_live(self, op_id: str) -> bool:
        """Whether an operation is running or paused. An aborted or failed rollout leaves its
        nodes where it stopped until the next push, which it no longer holds up."""
        try:
            state = json.loads(self.mirror.get(records.op_key(op_id)) or b"{}").get("state")
        except ValueError:
            return False
        return state in ("OP_RUNNING", "OP_PAUSED")

    async def update_rollout(self, name: str, op_id: str, change: Callable[[list[str]], list[str] | None]) -> None:
        """Change the set of nodes a rollout has reached (`change` returns the new list, or None to
        end the rollout: every node then runs the new revision). A no-op once the rollout is gone."""
        key = records.assignment_key(name)
        while True:
            raw = self.mirror.get(key)
            assignment = decode(AssignmentRecord, raw)
            rollout = assignment.active_rollout() if assignment else None
            if rollout is None or rollout.op != op_id:
                return
            done = change(list(rollout.done))
            pin = {} if done is None else {**assignment.rollout, "done": sorted(set(done))}
            tx = self.client.transactions
            ok, responses = await self.client.transaction(
                compare=[tx.value(self.key(key)) == raw],
                success=[tx.put(self.key(key), encode(replace(assignment, rollout=pin)))], failure=[])
            if ok:
                await self.mirror.wait_revision(responses[0].response_put.header.revision, timeout=10)
                return

    def _validate_on_targets(self, name: str, text: str, targets: list[str]) -> None:
        """The config alone, and together with every other config each target node gets."""
        current = self.current_configs()
        members = self.members()
        combinations = {frozenset()}
        for node in targets:
            combinations.add(frozenset(c.name for c in current.values()
                                       if c.name != name and c.selector.matches(members[node])))
        for others in combinations:
            configs.validate({name: text, **{o: current[o].text for o in others}})

    async def rollback(self, name: str, to: int, message: str, author: str) -> tuple[int, list[str], bool, str]:
        history = configs.revisions_of(self.mirror.items(records.revisions_prefix(name)), name)
        if not history:
            raise NotFound(f"no such config: {name}")
        if to not in history:
            raise NotFound(f"config {name} has no revision {to} (revisions 1-{max(history)})")
        return await self.push(name, history[to].text, Selector(), message or f"rollback to revision {to}",
                               author, rollback_of=to)

    def history(self, name: str) -> tuple[dict[int, RevisionRecord], int]:
        history = configs.revisions_of(self.mirror.items(records.revisions_prefix(name)), name)
        current = decode(AssignmentRecord, self.mirror.get(records.assignment_key(name)))
        if not history or current is None:
            raise NotFound(f"no such config: {name}")
        return history, current.revision

    def revision(self, name: str, number: int) -> tuple[int, RevisionRecord]:
        history, current = self.history(name)
        number = number or current
        if number not in history:
            raise NotFound(f"config {name} has no revision {number} (revisions 1-{max(history)})")
        return number, history[number]

    def config_status(self) -> list[pb.NodeConfigStatus]:
        current = self.current_configs()
        result = []
        for name, member in self.members().items():
            desired = self.desired(member, current).revision
            applied = self.applied(member)
            rec = self.reconcile_record(name)
            in_sync = same_revision(desired, applied)
            result.append(pb.NodeConfigStatus(
                node=name, desired_revision=desired, applied_revision=applied, in_sync=in_sync,
                last_error="" if in_sync else rec.last_error, last_attempt=rec.last_attempt,
                attempts=0 if in_sync else rec.attempts, edited_by_hand=member.edited_by_hand,
                up=self.node_record(name) is not None))
        return result

    async def record_reconcile(self, name: str, record: ReconcileRecord) -> None:
        if record != self.reconcile_record(name):
            await self.client.put(self.key(records.reconcile_key(name)), encode(record))

    def note_member_applied(self, name: str, revision: str) -> None:
        self._applied_here[name] = revision
        self._notify()


def revision_message(name: str, number: int, rev: RevisionRecord, *, text: bool) -> pb.ConfigRevision:
    selector = configs.selector_of(rev)
    return pb.ConfigRevision(
        name=name, revision=number, config_text=rev.text if text else "", author=rev.author, message=rev.message,
        created_at=rev.created_at, rollback_of=rev.rollback_of, sha256=rev.sha256,
        assignment=pb.Assignment(nodes=list(selector.nodes), labels=selector.labels))

