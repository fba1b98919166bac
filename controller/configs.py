"""Config revisions: validated with the agent's own parser, stored immutably, composed per node.

A node may be assigned several named configs; what it is sent is their current revisions
joined into one fleet file, identified as `name@rev,name@rev` (sorted by name), so the
agent's single applied revision says exactly which configs and revisions it runs.

`%(ENV_X)s` in a pushed config means the agent's environment, so validation here never
reads the controller's: each ENV_ name expands to a marker, an option whose value holds one
is not converted or checked (nor anything that depends on its value, which is checked with
the option's default), and the agent makes those checks when it applies the config. Errors
name the variable, never a value.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.model import Config
from fleetvisor.agent.config.parser import load, program_sections

from . import planning
from .errors import InvalidArgument
from .records import (
    AssignmentRecord,
    MemberRecord,
    RevisionRecord,
    Rollout,
    Selector,
    decode,
    revision_key,
    revisions_prefix,
    selector_from,
)

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(name: str) -> None:
    if not name or not set(name) <= NAME_CHARS or name.startswith("."):
        raise InvalidArgument(f"config name {name!r} must be letters, digits, '-', '_' or '.'")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def validate(named_texts: Mapping[str, str], known_elsewhere: Collection[str] = ()) -> Config:
    """Parse the configs together as one node would include them, against an empty node file
    whose programs are `known_elsewhere` (the names depends_on may use: the target nodes' own).
    Raises InvalidArgument with the agent parser's message (file named after the config)."""
    with tempfile.TemporaryDirectory(prefix="fleetvisor-validate-") as tmp:
        main = os.path.join(tmp, "node.conf")
        with open(main, "w") as f:
            f.write("[supervisord]\n")
        paths = []
        for name, text in sorted(named_texts.items()):
            path = os.path.join(tmp, f"{name}.conf")
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        try:
            return load(main, extra_files=paths, host_node_name="node", defer_env=True,
                        known_elsewhere=known_elsewhere)
        except ConfigError as exc:
            raise InvalidArgument(str(exc).replace(tmp + os.sep, "")) from None


def check_local(name: str, text: str, local: Mapping[str, Iterable[str]]) -> None:
    """Raises InvalidArgument when config `name` defines a program-level section that the own
    files of a node it goes to define too (`local`: node -> its sections, as heartbeats say):
    the node would refuse it."""
    defined = set(program_sections(text))
    clashes: dict[tuple[str, ...], list[str]] = {}
    for node, sections in sorted(local.items()):
        both = tuple(sorted(defined.intersection(sections)))
        if both:
            clashes.setdefault(both, []).append(node)
    if clashes:
        both, nodes = next(iter(clashes.items()))
        where = ", ".join(nodes[:3]) + (f" (and {len(nodes) - 3} more)" if len(nodes) > 3 else "")
        raise InvalidArgument(f"config {name} defines {', '.join(f'[{s}]' for s in both)}, which node {where} "
                              "already defines in its own config file: rename one of them, or leave the node "
                              "out (--nodes, --label)")


@dataclass(frozen=True)
class Current:
    """One config's current revision as the fleet should run it."""

    name: str
    revision: int
    selector: Selector
    text: str
    rollout: Rollout | None = None
    previous_text: str = ""  # the text of rollout.previous, for the nodes it has not reached

    def for_node(self, node: str) -> tuple[int, str] | None:
        """(revision, text) this node should run, or None for none at all."""
        if self.rollout is None or node in self.rollout.done:
            return self.revision, self.text
        if not self.rollout.previous:
            return None
        return self.rollout.previous, self.previous_text


def current_configs(entries: Mapping[str, bytes]) -> dict[str, Current]:
    """From a mirror's `assignments/` and `configs/` keys: each config's current revision."""
    result = {}
    for key, raw in entries.items():
        if not key.startswith("assignments/"):
            continue
        name = key[len("assignments/"):]
        assignment = decode(AssignmentRecord, raw)
        if assignment is None:
            continue
        rev = decode(RevisionRecord, entries.get(revision_key(name, assignment.revision)))
        if rev is None:
            continue
        rollout = assignment.active_rollout()
        previous = decode(RevisionRecord, entries.get(revision_key(name, rollout.previous))) if rollout else None
        result[name] = Current(name, assignment.revision, assignment.target(), rev.text, rollout,
                               previous.text if previous else "")
    return result


@dataclass(frozen=True)
class Part:
    """One config at one revision, as part of a node's fleet file."""

    name: str
    revision: int
    text: str


@dataclass(frozen=True)
class Desired:
    revision: str  # "" when nothing is assigned: the node's fleet file should be empty
    text: str
    parts: tuple[Part, ...] = ()


def compose(parts: Iterable[Part]) -> Desired:
    """The fleet file of these configs, and its revision id."""
    chosen = tuple(sorted(parts, key=lambda p: p.name))
    revision = ",".join(f"{p.name}@{p.revision}" for p in chosen)
    text = "".join(f"; fleet config {p.name} revision {p.revision}\n{p.text.rstrip()}\n\n" for p in chosen)
    return Desired(revision, text, chosen)


def desired_for(member: MemberRecord, configs: Iterable[Current]) -> Desired:
    parts = []
    for c in configs:
        wanted = c.for_node(member.name) if c.selector.matches(member) else None
        if wanted is not None:
            parts.append(Part(c.name, *wanted))
    return compose(parts)


def revision_numbers(revision: str) -> dict[str, int]:
    """Config name -> revision number, from a node's applied revision id (`name@rev,...`). Parts
    of another form (a revision applied per node under a name of its own) give nothing."""
    result = {}
    for part in revision.split(","):
        name, _, number = part.rpartition("@")
        if name and number.isdigit():
            result[name] = int(number)
    return result


def revisions_of(entries: Mapping[str, bytes], name: str) -> dict[int, RevisionRecord]:
    prefix = revisions_prefix(name)
    result = {}
    for key, raw in entries.items():
        number = key[len(prefix):]
        if key.startswith(prefix) and number.isascii() and number.isdigit():  # another key is unreadable.py's
            rev = decode(RevisionRecord, raw)
            if rev is not None:
                result[int(number)] = rev
    return dict(sorted(result.items()))


def selector_of(record: RevisionRecord) -> Selector:
    return selector_from(record.selector)


def programs(name: str, text: str, known_elsewhere: Collection[str] = ()) -> list[tuple[str, str, str | None]]:
    """(group, process name, user= or None) of every process config `name` defines. Raises
    InvalidArgument when the name is not plain or the text does not parse (`known_elsewhere`:
    as in validate)."""
    check_name(name)
    return [(p.group or g.name, p.name, p.user) for g in validate({name: text}, known_elsewhere).groups
            for p in g.processes]


def gates(name: str, text: str, known_elsewhere: Collection[str] = ()) -> dict[str, str]:
    """What a rollout of config `name` waits for, per group of the text: its health check where
    the text gives its processes one (they report health once they run it), else RUNNING."""
    return {g.name: planning.HEALTH_GATE if any(p.healthcheck is not None for p in g.processes)
            else planning.RUNNING_GATE for g in validate({name: text}, known_elsewhere).groups}


def local_names(members: Iterable[MemberRecord]) -> set[str]:
    """The program and group names the nodes' own files define (from their heartbeats)."""
    return {section.partition(":")[2] for m in members for section in m.local_sections}
