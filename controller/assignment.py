"""Which controller follows which node: rendezvous (highest-random-weight) hashing of the node
name over the live controller ids.

Pure and the same on every controller: each one computes it from its copy of etcd (the live
`controllers/` keys and the members), so nothing about the assignment is ever written. A node
goes to the controller whose (controller, node) hash is highest; when a controller leaves, only
its nodes move (each to the next highest), and when one joins, only the nodes it now wins move
to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field


def weight(controller: str, node: str) -> int:
    """The pair's score: 64 bits of BLAKE2b, stable across processes and releases (not hash())."""
    digest = hashlib.blake2b(f"{controller}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(node: str, controllers: Iterable[str]) -> str:
    """The controller that follows `node` ("" when there is none). Ties, which need equal
    64-bit hashes, go to the smaller id so that every controller agrees."""
    best, best_weight = "", -1
    for controller in controllers:
        w = weight(controller, node)
        if w > best_weight or (w == best_weight and controller < best):
            best, best_weight = controller, w
    return best


def assign(nodes: Iterable[str], controllers: Iterable[str]) -> dict[str, str]:
    """Every node's owner."""
    ids = sorted(set(controllers))
    return {node: owner(node, ids) for node in nodes}


def shares(assignment: dict[str, str], controllers: Iterable[str]) -> dict[str, int]:
    """How many nodes each controller follows (0 for one that follows none)."""
    counts = dict.fromkeys(sorted(set(controllers)), 0)
    for controller in assignment.values():
        counts[controller] = counts.get(controller, 0) + 1
    return counts


@dataclass
class Assigner:
    """The assignment kept from one change to the next: while the controllers stay the same,
    only nodes not seen before are hashed (members change often, controllers seldom)."""

    controllers: tuple[str, ...] = ()
    owners: dict[str, str] = field(default_factory=dict)

    def update(self, nodes: Iterable[str], controllers: Iterable[str]) -> dict[str, str]:
        """Every node's owner, as a new dict (the previous one is left as it was)."""
        ids = tuple(sorted(set(controllers)))
        known = self.owners if ids == self.controllers else {}
        self.controllers = ids
        self.owners = {node: known.get(node) or owner(node, ids) for node in nodes}
        return self.owners
