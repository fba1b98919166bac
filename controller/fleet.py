"""The controller's core: the fleet as etcd and the agents describe it, and every change to it.

A composition of the parts, each owning one thing: `store` (etcd reads through the mirror,
compare-and-put writes), `membership` (registrations and leases), `configs` (config revisions
and what each node should run), `roster` (the running controllers), `links` (one live link per
agent: followed here for this controller's share, `assignment`), `peers` (the other
controllers' shares) and `views` (status as callers see it). Fleet itself only tells listeners
that something changed. Writes are visible in the mirror before a call returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aetcd

from fleetvisor.agent.security.tlsfiles import TlsMaterial

from .assignment import Assigner, shares
from .configstore import ConfigStore
from .livestate import NodeLinks
from .membership import Membership
from .mirror import Change, Mirror
from .overrides import Overrides, ensure_cluster_id
from .peerlinks import Peers
from .roster import Roster
from .store import Store
from .views import Views

SYNC_GAP = 0.05  # seconds: links are re-shared at most this often (see Fleet._on_mirror)


@dataclass(frozen=True)
class Share:
    """A live controller's share of the agents' state streams, as this controller sees it."""

    id: str
    address: str
    nodes: int  # members assigned to it
    connected: bool  # this controller gets their live state from it (itself: True)
    error: str = ""


class Fleet:
    def __init__(self, client: aetcd.Client, mirror: Mirror, controller_id: str, *, node_ttl: int,
                 tls: TlsMaterial | None, advertise: str = "", controller_ttl: float = 0,
                 max_heartbeat_rate: float = 0) -> None:
        """`controller_ttl`: how long a dead controller's share stays its own (at most `node_ttl`);
        `max_heartbeat_rate`: see Membership."""
        self.id = controller_id
        self.store = Store(client, mirror)
        self.membership = Membership(self.store, controller_id, node_ttl, max_heartbeat_rate)
        self.configs = ConfigStore(self.store, self.membership)
        self.overrides = Overrides(self.store, self.membership)
        self.roster = Roster(self.store, controller_id, advertise, min(controller_ttl or node_ttl, node_ttl))
        self.assigner = Assigner()
        self.links = NodeLinks(tls, self._notify)
        self.peers = Peers(controller_id, self.links, tls, grace=self.roster.ttl, on_gone=self._sync_links)
        self.views = Views(self.membership, self.configs, self.links, controller_id, self.overrides, mirror)
        self._changed = asyncio.Event()
        self.changes = 0  # counts changes; see wait_change
        self._listeners: list[Callable[[], None]] = []
        self._sync_soon: asyncio.TimerHandle | None = None  # see _on_mirror
        mirror.subscribe(self._on_mirror)

    @property
    def cluster_id(self) -> str:
        """The identity of this fleet's etcd data (records.py `cluster-id`), known after `identify`."""
        return self.overrides.cluster_id

    async def identify(self) -> str:
        """Read this store's cluster identity, making it if the store has none (before `start`)."""
        self.overrides.cluster_id = await ensure_cluster_id(self.store, self.id)
        return self.overrides.cluster_id

    async def start(self) -> None:
        """Register this controller, and follow its share of the agents."""
        await self.roster.start()
        self._sync_links()

    async def close(self) -> None:
        if self._sync_soon is not None:
            self._sync_soon.cancel()
        await self.roster.close()  # first: the others take this controller's share at once
        await self.peers.close()
        await self.links.close()
        await self.membership.close()

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
        members = self.membership.on_mirror(changes)
        if (self.roster.on_mirror(changes) or members) and self._sync_soon is None:
            # once for the changes of a short while: nodes registering one by one (a fleet
            # starting) each re-shared every link, O(nodes) per node
            self._sync_soon = asyncio.get_running_loop().call_later(SYNC_GAP, self._sync_links)
        self._notify()

    def _sync_links(self) -> None:
        if self._sync_soon is not None:
            self._sync_soon.cancel()
            self._sync_soon = None
        members = self.membership.members()
        controllers = self.roster.live()
        owners = self.assigner.update(members, controllers.keys() - self.peers.gone())
        self.links.sync({name: member.address for name, member in members.items()}, owners, self.id)
        self.peers.sync(controllers, owners)

    def shares(self) -> list[Share]:
        """Every live controller's share (one that is gone from here, peerlinks.py, has none)."""
        counts = shares(self.assigner.owners, self.assigner.controllers)
        result = []
        for cid, record in sorted(self.roster.live().items()):
            feed = self.peers.feeds.get(cid)
            connected = cid == self.id or (feed is not None and feed.connected)
            error = "" if connected else (feed.error if feed is not None else "not followed yet")
            result.append(Share(cid, record.address, counts.get(cid, 0), connected, error))
        return result

    def note_applied(self, name: str, revision: str) -> None:
        """This controller just applied `revision` on node `name`."""
        self.membership.note_applied(name, revision)
        self._notify()
