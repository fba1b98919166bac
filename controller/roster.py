"""Which controllers run: each one's `controllers/<id>` key on a lease of its own.

The key says where the other controllers reach this one (its advertised gRPC address). Its
lease is kept alive every third of the TTL; a controller that dies stops renewing it, etcd
deletes the key within the TTL, and every survivor's mirror sees the delete, so the dead
one's share of the agents is taken over (assignment.py) without anyone writing for it. A
controller that shuts down revokes its lease, so the others take over at once.

Live controllers are read from the mirror. This controller always counts itself: while etcd
is away (nothing can be renewed, nothing in the copy expires) it keeps following its share,
and a lone controller follows everything even before its key comes back through the watch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from . import records
from .backoff import Backoff
from .etcd import EtcdError, describe, recover, request_timeout
from .mirror import Change
from .records import ControllerRecord, decode, encode
from .store import Put, Store

log = logging.getLogger("fleetvisor.controller")


class Roster:
    def __init__(self, store: Store, controller_id: str, address: str, ttl: float) -> None:
        self.store = store
        self.me = ControllerRecord(controller_id, address, time.time())
        self.ttl = max(1, math.ceil(ttl))
        self._lease = 0
        self._task: asyncio.Task[None] | None = None
        self._decoded: dict[str, tuple[bytes, ControllerRecord]] = {}

    @property
    def id(self) -> str:
        return self.me.id

    def live(self) -> dict[str, ControllerRecord]:
        """The running controllers by id (this one included), as this controller's copy has them."""
        found = {self.me.id: self.me}
        for key, raw in self.store.items(records.CONTROLLERS).items():
            cid = key[len(records.CONTROLLERS):]
            hit = self._decoded.get(cid)
            if hit is None or hit[0] != raw:
                record = decode(ControllerRecord, raw)
                if record is None or record.id != cid:
                    continue  # unreadable.py says so in the log
                self._decoded[cid] = hit = (raw, record)
            if cid != self.me.id:
                found[cid] = hit[1]
        return found

    @staticmethod
    def on_mirror(changes: list[Change]) -> bool:
        """True when the set of controllers (or an address) may have changed."""
        return any(c.key.startswith(records.CONTROLLERS) for c in changes)

    async def start(self) -> None:
        """Register, then keep the registration alive. Raises EtcdError."""
        try:
            await self._register()
        except Exception as exc:
            raise EtcdError(f"cannot register this controller in etcd: {describe(exc)}") from None
        self._task = asyncio.create_task(self._keep(), name="controller registration")

    async def close(self) -> None:
        """Stop renewing and revoke the lease: the others take this controller's share at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        if self._lease:
            try:
                async with asyncio.timeout(request_timeout(self.store.client)):
                    await self.store.client.revoke_lease(self._lease)
            except Exception as exc:  # it expires within the TTL anyway
                log.warning("could not withdraw this controller's registration: %s", describe(exc))
            self._lease = 0

    async def _register(self) -> None:
        granted = await self.store.client.lease(self.ttl)
        self._lease = int(granted.id)
        await self.store.compare_and_put([Put(records.controller_key(self.me.id), encode(self.me), self._lease)])

    async def _keep(self) -> None:
        """Renew every third of the TTL; a lease found gone (etcd was away longer than the TTL,
        or restored) is replaced and the key written again."""
        backoff = Backoff(initial=0.5, cap=self.ttl / 3)
        failing = False
        while True:
            await asyncio.sleep(backoff.current or self.ttl / 3)
            try:
                async with asyncio.timeout(request_timeout(self.store.client)):
                    reply = await self.store.client.refresh_lease(self._lease)
                    if reply is None or reply.TTL <= 0 or self.store.get(records.controller_key(self.me.id)) is None:
                        await self._register()
                if failing:
                    log.info("this controller's registration is renewed again")
                failing = False
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("cannot renew this controller's registration in etcd: %s; retrying", describe(exc))
                failing = True
                await recover(self.store.client, exc)
                backoff.next()
