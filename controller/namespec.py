"""Host-prefixed namespecs: which nodes, and which processes on them, a name pattern means.

`NODE:NAMESPEC` where NODE may be a glob (`web-*`, `*`) and NAMESPEC is supervisord's (`name`
meaning the group of that name, `group:name`, `group:*`), globs allowed; a bare `NODE` or
`NODE:*` is every process on the node, and `all` every process everywhere.

The one reading of the grammar: the controller selects with it and fleetctl refuses a malformed
pattern with it before any call. So it stays pure: importing it pulls in neither etcd nor grpc.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from fleetvisor.agent.security.policy import program_matches

GLOB_CHARS = frozenset("*?[")
EVERYTHING = "all"


class PatternError(ValueError):
    """A pattern that cannot mean anything; the message is for the operator."""


@dataclass(frozen=True)
class Pattern:
    node: str
    spec: str = "*"

    @property
    def exact_node(self) -> bool:
        """Names one node outright, so a node of that name must exist (a glob may match none)."""
        return not GLOB_CHARS & set(self.node)

    @property
    def whole_node(self) -> bool:
        return self.spec == "*"

    def matches_node(self, node: str) -> bool:
        return fnmatchcase(node, self.node)

    def matches_process(self, group: str, name: str) -> bool:
        return program_matches(self.spec, group, name)


def parse(text: str) -> Pattern:
    text = text.strip()
    if not text:
        raise PatternError("an empty name is not a pattern")
    if text == EVERYTHING:
        return Pattern("*")
    node, _, spec = text.partition(":")
    if not node:
        raise PatternError(f"{text!r}: the node part is empty (use *:{spec} for every node)")
    return Pattern(node, "*" if spec in ("", EVERYTHING) else spec)


def parse_all(texts: Iterable[str]) -> list[Pattern]:
    """The patterns; none at all means everything."""
    patterns = [parse(t) for t in texts]
    return patterns or [Pattern("*")]
