"""The audit log: every mutating fleet command, who asked, and how it ended, kept in etcd."""

from __future__ import annotations

import json
import logging
import time

import aetcd

from . import records
from .mirror import Mirror
from .records import AuditRecord, decode, encode

log = logging.getLogger("fleetvisor.controller")


async def record(client: aetcd.Client, prefix: str, entry: AuditRecord) -> None:
    try:
        await client.put((prefix + records.audit_key(entry.time)).encode(), encode(entry))
    except aetcd.exceptions.ClientError as exc:
        # The command itself is done; losing its audit line must be loud but not undo it.
        log.error("cannot write the audit entry for %s by %s: %s", entry.action, entry.who, exc)


def entry(who: str, action: str, args: dict[str, object], ok: bool, result: str, controller_id: str) -> AuditRecord:
    return AuditRecord(time=time.time(), who=who, action=action, detail=json.dumps(args, sort_keys=True),
                       ok=ok, result=result, controller_id=controller_id)


def listing(mirror: Mirror, since: float, limit: int) -> list[AuditRecord]:
    """Entries since `since` (unix time), oldest first, the newest `limit` of them if limit > 0."""
    entries = [e for _, raw in sorted(mirror.items(records.AUDIT).items())
               if (e := decode(AuditRecord, raw)) is not None and e.time >= since]
    return entries[-limit:] if limit > 0 else entries
