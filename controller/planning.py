"""Pure decisions of fleet operations: batch sizes, the plan, and whether a node is healthy
(its processes RUNNING, and healthy where they have a health check).

Nothing here does I/O or reads a clock; the engine (operations.py) feeds it facts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from fnmatch import fnmatchcase

from .errors import FailedPrecondition, InvalidArgument, NotFound
from .processes import ProcessView, ProcState
from .records import labels_match


class PlanError(InvalidArgument):
    """An operation that cannot be planned; the message is for the operator."""


def batch_size(total: int, batch: int, max_unavailable: str) -> int:
    """Nodes per batch: `batch` if given, else `max_unavailable` ("N" or "P%" of the nodes,
    rounded down but at least 1), else 1."""
    if batch < 0:
        raise PlanError("--batch must be at least 1")
    if batch:
        return batch
    text = max_unavailable.strip()
    if not text:
        return 1
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, int(total * percent / 100))
        value = int(text)
        if value < 1:
            raise ValueError
        return value
    except ValueError:
        raise PlanError(f"max-unavailable {max_unavailable!r} must be a whole number >= 1 or a "
                        "percentage in (0, 100]") from None


def plan(nodes: Iterable[str], size: int, canary: int = 0) -> list[list[str]]:
    """Ordered batches: the canaries first (if any), then `size` nodes at a time, by name."""
    ordered = sorted(set(nodes))
    if not ordered:
        raise PlanError("no node to act on")
    batches = []
    if canary:
        if canary >= len(ordered):
            raise PlanError(f"--canary {canary} leaves no node to promote to (there are {len(ordered)})")
        batches.append(ordered[:canary])
        ordered = ordered[canary:]
    batches += [ordered[i:i + size] for i in range(0, len(ordered), size)]
    return batches


def select_nodes(members: Mapping[str, Mapping[str, str]], globs: Iterable[str], labels: Mapping[str, str],
                 down: Collection[str] = ()) -> list[str]:
    """The members (name -> labels) that one of `globs` names (every member when none is given)
    and that carry `labels`, by name, but for those `down` (a node that is gone would stop the
    operation at its turn). A glob that names no member is refused (NotFound), so that a typo
    never shrinks the operation silently; so is a selection of nothing, and a node named
    exactly that is down (FailedPrecondition)."""
    globs = list(globs)
    for pattern in globs:
        if pattern == _literal(pattern) and pattern in down:
            raise FailedPrecondition(f"node {pattern} is down; once it is back, try again (or forget it: "
                                     f"fleetctl nodes forget {pattern})")
        if not any(fnmatchcase(name, pattern) for name in members):
            raise NotFound(f"no such node: {pattern}" if pattern == _literal(pattern)
                           else f"no node matches {pattern}")
    matched = sorted(name for name, have in members.items()
                     if (not globs or any(fnmatchcase(name, g) for g in globs))
                     and labels_match(dict(have), dict(labels)))
    picked = [name for name in matched if name not in down]
    if not picked:
        wanted = " ".join([*globs, *(f"{k}={v}" for k, v in sorted(labels.items()))])
        if matched:
            raise FailedPrecondition(f"every node that matches {wanted} is down" if wanted else "every node is down")
        raise NotFound(f"no node matches {wanted}" if wanted else "no node is registered")
    return picked


def _literal(pattern: str) -> str:
    return "".join(c for c in pattern if c not in "*?[]")


BAD = {ProcState.BACKOFF, ProcState.FATAL, ProcState.EXITED}


@dataclass(frozen=True)
class Health:
    """One look at a node's processes of the groups an operation cares about."""

    all_running: bool
    failure: str  # non-empty: a process went BACKOFF/FATAL/EXITED (or vanished)


class Checked(IntEnum):
    """A process's health as the agent reports it (agent_pb2.Health, numbered as on the wire)."""

    NONE = 0  # no health check: RUNNING is the gate
    UNKNOWN = 1
    HEALTHY = 2
    UNHEALTHY = 3


def health(processes: Iterable[ProcessView], groups: set[str], pids_before: set[int]) -> Health:
    """Whether every process of `groups` is ready (and, for a restart, with a new pid): RUNNING,
    and healthy where it has a health check. An unhealthy one fails the batch as BACKOFF does."""
    mine = [p for p in processes if p.group in groups]
    if not mine:  # not there yet (a revision being applied): only the deadline can fail it
        return Health(False, "")
    for proc in mine:
        if proc.state in BAD:
            detail = f" ({proc.description})" if proc.description else ""
            return Health(False, f"{proc.namespec} is {proc.statename}{detail}")
        if proc.state == ProcState.RUNNING and proc.health == Checked.UNHEALTHY and proc.pid not in pids_before:
            detail = f" ({proc.health_message})" if proc.health_message else ""
            return Health(False, f"{proc.namespec} is RUNNING but unhealthy{detail}")
    ready = all(p.state == ProcState.RUNNING and p.pid not in pids_before
                and p.health in (Checked.NONE, Checked.HEALTHY) for p in mine)
    return Health(ready, "")


HEALTH_GATE = "health check"  # every process healthy by its check for healthy_for
RUNNING_GATE = "RUNNING"  # every process RUNNING for healthy_for


def gate(processes: Iterable[ProcessView], group: str) -> str:
    """What a batch waits for on `group`: its health check where its processes have one."""
    checked = any(p.health != Checked.NONE for p in processes if p.group == group)
    return HEALTH_GATE if checked else RUNNING_GATE


def gave_up(processes: Iterable[ProcessView], groups: set[str]) -> list[str]:
    """The namespecs of `groups` that supervisord gave up on (FATAL), sorted."""
    return sorted(p.namespec for p in processes if p.group in groups and p.state == ProcState.FATAL)


def groups_of(config_text: str) -> set[str]:
    """The names a config's processes may be grouped under (what a rollout's health gate
    watches): every [group:x] and every program's own name. Programs that a [group:x] lists run
    under x, so their own names simply match nothing."""
    names = set()
    for line in config_text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            kind, _, name = line[1:-1].partition(":")
            if kind in ("group", "program", "fcgi-program", "eventlistener") and name:
                names.add(name.strip())
    return names
