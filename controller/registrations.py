"""The lease-bound registrations (`nodes/<node>`) of the nodes that heartbeat to this controller.

They all hang on one lease of this controller's, kept alive every third of the node TTL, so a
heartbeat costs no etcd call at all: the controller notes the time, and a node that falls
silent has its registration deleted here once a TTL has passed without a heartbeat. Should this
controller die, its lease expires and takes the registrations of every node that did not move
to another controller with it; a node that moved was registered again there, on that
controller's lease. (Before, each node had a lease of its own, renewed on each heartbeat: one
etcd round trip per heartbeat, most of an idle controller's CPU at a thousand nodes.)
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable

import aetcd

from .records import NodeRecord, decode, node_key
from .store import Store

log = logging.getLogger("fleetvisor.controller")

RETRY = 1.0  # seconds before trying again to delete a silent node's registration etcd refused
# Heartbeats a second a controller asks for at most, by default (--max-heartbeat-rate): up to
# 667 nodes with the default TTL, one a node every 3.3 s. A heartbeat costs a controller about
# 0.6 ms of its loop (most of it gRPC's per-call work), so 200 a second is about an eighth of a
# core; unbounded, 5000 nodes' heartbeats were most of a controller's time.
MAX_HEARTBEAT_RATE = 200.0


class RegistrationLease:
    """This controller's lease for registrations: granted on first use, renewed every TTL/3;
    when etcd says it expired (etcd was away longer than the TTL), the next heartbeat of each
    node gets a new one and registers the node again."""

    def __init__(self, client: aetcd.Client, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self.id = 0
        self._grant = asyncio.Lock()
        self._keeper: asyncio.Task[None] | None = None

    async def get(self) -> int:
        async with self._grant:
            if not self.id:
                granted = await self.client.lease(self.ttl)
                self.id = int(granted.id)
                self._keeper = asyncio.create_task(self._keep(self.id), name="registration lease keep-alive")
            return self.id

    async def _keep(self, lease: int) -> None:
        while self.id == lease:
            await asyncio.sleep(self.ttl / 3)
            try:
                reply = await self.client.refresh_lease(lease)
            except Exception as exc:  # etcd away: the next renewal may still be in time
                log.debug("registration lease %x not renewed: %s", lease, exc)
                continue
            if reply is None or reply.TTL <= 0:
                log.warning("the registration lease expired (etcd was away too long): nodes register again")
                if self.id == lease:
                    self.id = 0

    async def close(self) -> None:
        """Stop renewing. The lease is left to expire, not revoked: the nodes move to another
        controller within a heartbeat or two, and meanwhile stay registered."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)


def pace(nodes: int, node_ttl: float, max_rate: float) -> tuple[float, float]:
    """The heartbeat interval and the TTL to tell the `nodes` that heartbeat to a controller: a
    third of the node TTL, and the TTL; past `max_rate` heartbeats a second, both stretched so
    that the nodes stay under it (as Nomad scales its heartbeat TTL with the cluster): a
    controller of thousands of nodes spends its loop on them, not on heartbeats."""
    interval = max(node_ttl / 3, nodes / max_rate if max_rate > 0 else 0.0)
    return interval, 3 * interval


class SilenceWatch:
    """Deletes the registration of a node that heartbeats here once it has been silent for the
    TTL it was told: a heap of deadlines, and one task that sleeps until the earliest."""

    def __init__(self, store: Store, controller_id: str, due: Callable[[str], tuple[float, float]],
                 lease: RegistrationLease) -> None:
        """`due(name)`: the node's current deadline (0: none) and the TTL it was told."""
        self.store = store
        self.controller_id = controller_id
        self.due = due
        self.lease = lease
        self._deadlines: list[tuple[float, str]] = []
        self._added = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def note(self, name: str, deadline: float) -> None:
        """A heartbeat of `name`: its deadline moves on (older entries are skipped)."""
        heapq.heappush(self._deadlines, (deadline, name))
        self._added.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="silent nodes' registrations")

    async def _run(self) -> None:
        while True:
            if not self._deadlines:
                self._added.clear()
                await self._added.wait()
                continue
            when, name = self._deadlines[0]
            wait = when - time.time()
            if wait > 0:  # a shorter TTL told meanwhile (fewer nodes) may come due sooner: look again in 1 s
                await asyncio.sleep(min(wait, 1.0))
                continue
            heapq.heappop(self._deadlines)
            deadline, ttl = self.due(name)
            if deadline > when:
                continue  # heard since: a later deadline is in the heap
            await self._expire(name, ttl)

    async def _expire(self, name: str, ttl: float) -> None:
        key = node_key(name)
        raw = self.store.get(key)
        record = decode(NodeRecord, raw)
        if record is None or record.controller_id != self.controller_id or record.lease != self.lease.id:
            return  # gone already, or registered by another controller (the node moved)
        try:
            if await self.store.compare_and_put([], {key: raw}, deletes=[key], visible=False):
                log.info("node %s is silent for %ds: its registration is removed", name, ttl)
        except Exception as exc:  # etcd away: again shortly (if the lease expires first, etcd did it)
            log.debug("registration of silent node %s not removed yet: %s", name, exc)
            heapq.heappush(self._deadlines, (time.time() + RETRY, name))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
