"""Values in etcd this controller cannot read, said in the log: once per key when it is found
(at start, or when it is written) and once when it is readable again.

The readers themselves stay quiet and carry on without such a value: a listing leaves the
record out and a lookup takes it as absent (records.decode) or answers UNAVAILABLE naming the
key (opmodel.decode). acl/ and revoked/ are acl.py's, which reports them the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from . import opmodel, records
from .errors import CorruptRecord
from .mirror import Change, Mirror

log = logging.getLogger("fleetvisor.controller")


def _record(cls: type) -> Callable[[str, bytes], object]:
    return lambda key, raw: records.load(cls, key, raw)


def _leader(key: str, raw: bytes) -> object:
    try:
        data = json.loads(raw)
    except ValueError:
        raise CorruptRecord(f"{key}: not JSON") from None
    if not records.fits(data, dict[str, str]):
        raise CorruptRecord(f"{key}: not an object of strings")
    return data


def _revision(key: str, raw: bytes) -> object:
    number = key.rpartition("/revs/")[2]
    if "/revs/" not in key or not (number.isascii() and number.isdigit()):
        raise CorruptRecord(f"{key}: not a config revision key (configs/<name>/revs/<number>)")
    return records.load(records.RevisionRecord, key, raw)


# key prefix (or whole key) -> a reader that raises CorruptRecord
READERS: dict[str, Callable[[str, bytes], object]] = {
    records.MEMBERS: _record(records.MemberRecord),
    records.NODES: _record(records.NodeRecord),
    records.CONFIGS: _revision,
    records.ASSIGNMENTS: _record(records.AssignmentRecord),
    records.RECONCILE: _record(records.ReconcileRecord),
    records.AUDIT: _record(records.AuditRecord),
    records.OPS: lambda key, raw: opmodel.decode(raw, key),
    records.CLUSTER_ID: _record(records.ClusterRecord),
    records.OVERRIDES: _record(records.OverrideRecord),
    records.CONTROLLERS: _record(records.ControllerRecord),
    records.LEADER: _leader,
}


def problem(key: str, raw: bytes) -> str | None:
    """Why the value under `key` (relative to the prefix) cannot be read; None when it can or
    when no reader here owns the key."""
    for prefix, read in READERS.items():
        if key == prefix or (prefix.endswith("/") and key.startswith(prefix)):
            try:
                read(key, raw)
            except CorruptRecord as exc:
                return str(exc)
            return None
    return None


class Unreadable:
    """Follows the mirror and logs the keys whose values cannot be read."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.keys: set[str] = set()  # the unreadable ones, now

    def start(self) -> None:
        for key, raw in self.mirror.items().items():
            self._note(key, raw)
        self.mirror.subscribe(self._on_mirror)

    def _on_mirror(self, changes: list[Change]) -> None:
        for change in changes:
            self._note(change.key, change.value)

    def _note(self, key: str, raw: bytes | None) -> None:
        why = problem(key, raw) if raw is not None else None
        if why is None:
            if key in self.keys:
                self.keys.discard(key)
                if raw is not None:
                    log.info("%s in etcd is readable again", key)
            return
        self.keys.add(key)
        log.error("ignoring unreadable record in etcd: %s", why.splitlines()[0][:300])
