"""What of its configs a node accepts, when it refuses them all together.

A node runs one fleet file made of every config assigned to it. When the node refuses that
file (a program that clashes with one of the node's own, an option its environment makes
invalid, a user it may not run), the configs it accepts still go out: each config is tried,
in name order, on top of those accepted so far (a dry run on the node). A refused config stays
at the revision the node runs now, or stays off the node if it never ran there. Refusals never
remove what runs: when the node runs a config that it now refuses and whose revision cannot be
rebuilt, nothing is accepted and the whole file stays refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from .configs import Desired, Part, compose

# Tries a fleet file on the node (a dry run): "" when the node accepts it, else its refusal.
Trial = Callable[[Desired], Awaitable[str]]


async def accepted(wanted: Desired, running: Mapping[str, Part | None],
                   trial: Trial) -> tuple[Desired, dict[str, str]] | None:
    """The fleet file the node accepts of `wanted`, and the refused configs with why; None
    when nothing may be applied. `running`: each config the node runs now, as the part it
    runs (None when its revision cannot be rebuilt)."""
    chosen: list[Part] = []
    refused: dict[str, str] = {}
    for part in wanted.parts:
        why = await trial(compose([*chosen, part]))
        if not why:
            chosen.append(part)
            continue
        refused[part.name] = why
        if part.name not in running:
            continue  # it never ran there: it stays off the node
        before = running[part.name]
        if before is None or before == part or await trial(compose([*chosen, before])):
            return None  # the node would lose what it runs of this config
        chosen.append(before)
    return compose(chosen), refused
