"""The audit log: every mutating fleet command, who asked, and how it ended, kept in etcd."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import aetcd

from fleetvisor.agent.security.identity import Identity

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


# What one entry keeps of a request: its arguments may be as big as the request (a label of a
# megabyte), and every entry is read back whole by `fleetctl audit`, in one message.
MAX_TEXT = 300  # characters of one string argument, and of the result
MAX_ITEMS = 50  # of one list or mapping argument


def entry(who: str, action: str, args: dict[str, object], ok: bool, result: str, controller_id: str) -> AuditRecord:
    return AuditRecord(time=time.time(), who=who, action=action, detail=json.dumps(_bounded(args), sort_keys=True),
                       ok=ok, result=_clip(result), controller_id=controller_id)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}... ({len(text)} characters)"


def _bounded(value: object) -> object:
    """`value` (JSON-able) with long strings clipped and long lists and mappings cut short."""
    if isinstance(value, str):
        return _clip(value)
    if isinstance(value, dict):
        items = list(value.items())
        kept = {_clip(str(k)): _bounded(v) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            kept["..."] = f"{len(items) - MAX_ITEMS} more"
        return kept
    if isinstance(value, (list, tuple)):
        kept_list = [_bounded(v) for v in value[:MAX_ITEMS]]
        return [*kept_list, f"... {len(value) - MAX_ITEMS} more"] if len(value) > MAX_ITEMS else kept_list
    return value


def listing(mirror: Mirror, since: float, limit: int) -> list[AuditRecord]:
    """Entries since `since` (unix time), oldest first, the newest `limit` of them if limit > 0."""
    entries = [e for _, raw in sorted(mirror.items(records.AUDIT).items())
               if (e := decode(AuditRecord, raw)) is not None and e.time >= since]
    return entries[-limit:] if limit > 0 else entries


class Refusals:
    """Audits refused calls (action "denied"), at most `burst` per identity per `window`
    seconds, so a flood of refusals cannot fill etcd; what was dropped is counted in the log."""

    def __init__(self, client: aetcd.Client, prefix: str, controller_id: str, *, burst: int = 20,
                 window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.prefix = prefix
        self.controller_id = controller_id
        self.burst = burst
        self.window = window
        self.clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # who -> (started, written, dropped)

    def admit(self, who: str) -> bool:
        """Whether to write this refusal of `who` (pure bookkeeping, apart from the log line)."""
        now = self.clock()
        started, written, dropped = self._windows.get(who, (now, 0, 0))
        if now - started >= self.window:
            if dropped:
                log.warning("dropped %d audit entries of refusals of %s in %.0f seconds", dropped, who,
                            now - started)
            started, written, dropped = now, 0, 0
        admitted = written < self.burst
        if len(self._windows) >= 10000 and who not in self._windows:
            self._windows.clear()  # a flood of distinct names: forget the old windows, not the limit
        self._windows[who] = (started, written + admitted, dropped + (not admitted))
        return admitted

    async def __call__(self, who: Identity | None, method: str, reason: str) -> None:
        name = who_of(who)
        reason = reason.splitlines()[0][:300] if reason else ""
        log.warning("refused %s for %s: %s", method.rpartition("/")[2] or method, name, reason)
        if self.admit(name):
            await record(self.client, self.prefix, entry(name, "denied", {"method": method}, False, reason,
                                                         self.controller_id))


def who_of(identity: Identity | None) -> str:
    """How audit names a caller: a person by name, anything else with its role."""
    if identity is None:
        return "unidentified caller"
    return identity.name if identity.role in ("operator", "viewer") else f"{identity.role} {identity.name}"
