"""The controller's reads and writes of its etcd keys: reads from the mirror, writes as one
compare-and-put transaction that returns once the mirror shows it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aetcd

from .mirror import Mirror

log = logging.getLogger("fleetvisor.controller")

VISIBLE_WITHIN = 10.0  # seconds a write may take to come back through this controller's watch


@dataclass(frozen=True)
class Put:
    key: str  # relative to the cluster prefix
    value: bytes
    lease: int = 0


class Store:
    def __init__(self, client: aetcd.Client, mirror: Mirror) -> None:
        self.client = client
        self.mirror = mirror
        self.prefix = mirror.prefix

    def key(self, relative: str) -> bytes:
        return (self.prefix + relative).encode()

    def get(self, relative: str) -> bytes | None:
        return self.mirror.get(relative)

    def items(self, subprefix: str) -> dict[str, bytes]:
        return self.mirror.items(subprefix)

    async def compare_and_put(self, puts: Sequence[Put], expect: Mapping[str, bytes | None] | None = None, *,
                              deletes: Sequence[str] = (), visible: bool = True) -> bool:
        """Write every put and delete every key of `deletes` in one transaction if each key of
        `expect` holds its value (None: the key is absent); False when one does not. With
        `visible`, return once this controller's mirror shows the write, so the caller's next
        read sees it."""
        tx = self.client.transactions
        compare = [tx.create(self.key(k)) == 0 if v is None else tx.value(self.key(k)) == v
                   for k, v in (expect or {}).items()]
        success = [tx.put(self.key(p.key), p.value, lease=p.lease) if p.lease else tx.put(self.key(p.key), p.value)
                   for p in puts]
        success += [tx.delete(self.key(k)) for k in deletes]
        ok, responses = await self.client.transaction(compare=compare, success=success, failure=[])
        if ok and visible and responses:
            last = responses[-1]
            revision = getattr(last, last.WhichOneof("response")).header.revision
            try:
                await self.mirror.wait_revision(revision, timeout=VISIBLE_WITHIN)
            except TimeoutError:
                log.warning("a write at etcd revision %d is stored but not yet visible here", revision)
        return bool(ok)
