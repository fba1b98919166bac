"""Compacting etcd's history, a leader duty: keep the last `retention` revisions, drop older ones.

etcd keeps every superseded value until it is told to compact. The controller rewrites
operation records step by step and config assignments on every push, so without compaction
the database grows for ever even when the live data does not. etcd can compact by itself
(`--auto-compaction-retention`), but a controller cannot assume the operator set that, so the
leader does it: every `interval` seconds it compacts to its mirror's revision minus
`retention`. The mirror's revision, not etcd's, so that nothing this controller's own watches
still have to read is compacted away. Compaction frees pages for reuse: the db file stops
growing but does not shrink (that is `etcdctl defrag`, left to operators).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aetcd

from .etcd import describe
from .mirror import Mirror

log = logging.getLogger("fleetvisor.controller")


@dataclass(frozen=True)
class CompactionPolicy:
    interval: float = 300.0  # seconds between compactions; 0: never (etcd or the operator compacts)
    retention: int = 1000    # revisions kept behind the newest the mirror has seen

    @property
    def enabled(self) -> bool:
        return self.interval > 0


class Compactor:
    def __init__(self, client: aetcd.Client, mirror: Mirror, policy: CompactionPolicy) -> None:
        self.client = client
        self.mirror = mirror
        self.policy = policy
        self.compacted = 0  # the revision etcd's history was last compacted to, as far as we know

    async def run(self) -> None:
        if not self.policy.enabled:
            return
        while True:
            await asyncio.sleep(self.policy.interval)
            await self.compact_once()

    async def compact_once(self) -> int | None:
        """Compact to mirror revision - retention; the revision compacted to, None when there was nothing to do."""
        target = self.mirror.revision - self.policy.retention
        if target <= self.compacted:
            return None
        try:
            await self.client.compact(target)
        except aetcd.exceptions.ClientError as exc:
            if "required revision has been compacted" in str(exc):
                # someone compacted as far or further (etcd's own auto-compaction, an earlier leader)
                self.compacted = target
                return None
            log.warning("cannot compact etcd to revision %d: %s; trying again in %.0fs", target, describe(exc),
                        self.policy.interval)
            return None
        log.info("compacted etcd history up to revision %d (keeping %d)", target, self.policy.retention)
        self.compacted = target
        return target
