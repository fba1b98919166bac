"""Whether the leader may push to a node: foreign nodes, per-node drift, pins and adoption.

Pure rules, so that they are tested without etcd or agents (reconcile.py and views.py feed them
from the mirror).

- **Foreign**: the node was last reconciled by another cluster (it reports another cluster
  identity, records.py `cluster-id`), or it runs configs this store does not know (`web@4` where
  this store has no config `web` or no revision 4 of it). A controller started on a new or
  another etcd would otherwise push its (empty) idea of the node and stop every fleet program
  there; so a foreign node is shown with the reason and nothing is pushed to it until an
  operator adopts it (`fleetctl nodes adopt NAME [--keep]`).
- **Drift**: the node runs a revision applied per node with `--force` while it belongs to this
  cluster. The policy is revert (logged), unless the node is pinned.
- **Pinned**: held at its local state for an incident; nothing is pushed to it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .records import OverrideRecord

NO_CONFIG = "none"  # the revision id of an empty fleet file, sent when a node's last config is unassigned


@dataclass(frozen=True)
class NodeFacts:
    """What a node reports about its fleet config."""

    applied: str = ""  # "name@rev,name@rev", "none", a per-node id, or "" when nothing was applied
    cluster_id: str = ""  # the identity of the cluster that last applied a revision there
    local: bool = False  # the applied revision was applied per node (--force)


def short(cluster_id: str) -> str:
    return cluster_id[:12] or "none"


def parts(applied: str) -> list[tuple[str, int]] | None:
    """("web", 4) for each part of a controller's revision id; None when it is not one."""
    if applied in ("", NO_CONFIG):
        return []
    found = []
    for part in applied.split(","):
        name, at, rev = part.partition("@")
        if not at or not name or not rev.isdigit():
            return None
        found.append((name, int(rev)))
    return found


def unknown_configs(applied: str, missing: Callable[[str, int], str]) -> str:
    """Why this store does not know `applied` ("" when it knows every part). `missing(name, rev)`
    says what the store lacks for one part ("" when it has it)."""
    found = parts(applied)
    if found is None:
        return f"{applied} is not a revision of this store"
    gaps = [gap for name, rev in found if (gap := missing(name, rev))]
    return "; ".join(gaps)


def foreign_reason(ours: str, facts: NodeFacts, missing: Callable[[str, int], str],
                   override: OverrideRecord) -> str:
    """Why the node is foreign to the cluster whose identity is `ours`; "" when it is not."""
    if override.adopted and facts.cluster_id == override.adopted_from and (
            not override.kept_revision or (facts.applied or NO_CONFIG) == override.kept_revision):
        return ""
    if facts.cluster_id and facts.cluster_id != ours:
        return (f"last reconciled by another cluster (identity {short(facts.cluster_id)}, "
                f"this store's is {short(ours)})")
    if facts.local and facts.cluster_id == ours:
        return ""  # drift, not foreign: see decide()
    gap = unknown_configs(facts.applied, missing)
    if gap:
        return f"runs {facts.applied}, which this store does not know ({gap})"
    return ""


class Action(enum.Enum):
    NONE = "in sync"
    PUSH = "push"
    REVERT = "revert the per-node revision"
    PINNED = "pinned: hold at its local state"
    FOREIGN = "foreign: push nothing until adopted"
    KEPT = "adopted with --keep: hold until its desired revision changes"


def same_revision(desired: str, applied: str) -> bool:
    return (desired or NO_CONFIG) == (applied or NO_CONFIG)


def decide(desired: str, facts: NodeFacts, *, foreign: str, override: OverrideRecord, ours: str) -> Action:
    """What the reconciler does with a node this pass. A per-node revision may carry any id
    (even the desired one), and so may another cluster's (its `web@1` is not this store's), so
    neither is taken as in sync because the ids agree."""
    if override.pinned:
        return Action.PINNED
    theirs = bool(facts.cluster_id) and facts.cluster_id != ours
    if same_revision(desired, facts.applied) and not facts.local and not theirs:
        return Action.NONE
    if foreign:
        return Action.FOREIGN
    if (override.adopted and override.kept_revision and (facts.applied or NO_CONFIG) == override.kept_revision
            and desired == override.kept_desired and not facts.local):
        return Action.KEPT
    if theirs and same_revision(desired, facts.applied) and not override.adopted:
        return Action.FOREIGN  # not reached through foreign_reason, which says so first
    if facts.local:
        return Action.REVERT
    return Action.PUSH
