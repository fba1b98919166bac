"""What fleet-mode arguments select: `--label k=v`, `--nodes a,b`, host-prefixed namespecs.

The controller does the selecting (and answers NOT_FOUND for a name that matches nothing,
supervisorctl's "no such process", exit 4); fleetctl only checks the arguments' shape, so a
typo is a one-line usage error before any call. The pattern grammar is the controller's own
(controller/namespec.py), imported rather than restated, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fleetvisor.controller import namespec

from .client import CommandError
from .exitcodes import USAGE


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """`k=v` strings as a dict; a missing `=` or an empty key is a usage error, not a silent miss."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise CommandError(f"--label {item!r}: expected KEY=VALUE, e.g. --label role=web", USAGE)
        if not key:
            raise CommandError(f"--label {item!r}: the key before '=' is empty", USAGE)
        if key in labels and labels[key] != value:
            raise CommandError(f"--label {key} given twice with different values ({labels[key]!r}, {value!r}); "
                               "a node has one value per label", USAGE)
        labels[key] = value
    return labels


def parse_node_list(text: str | None) -> list[str]:
    """`a,b, c` as names; empty entries (a trailing comma) are dropped."""
    if not text:
        return []
    return [name.strip() for name in text.split(",") if name.strip()]


def split_tail_target(target: str) -> tuple[str, str]:
    """`NODE:NAME` (NAME may itself be `group:name`) as (node, namespec)."""
    node, sep, name = target.partition(":")
    if not sep or not node or not name:
        raise CommandError(f"{target!r}: give NODE:NAME, e.g. web-1:app or web-1:workers:worker_00", USAGE)
    return node, name


def parse_pattern(text: str) -> namespec.Pattern:
    """A host-prefixed namespec as the controller will read it; malformed is a usage error."""
    try:
        return namespec.parse(text)
    except namespec.PatternError as exc:
        raise CommandError(str(exc), USAGE) from None


def status_patterns(names: Sequence[str]) -> list[str]:
    """What to ask GetStatus for: `all` anywhere means no filter; shapes are checked first."""
    for name in names:
        parse_pattern(name)
    return [] if namespec.EVERYTHING in names else list(names)
