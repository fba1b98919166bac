"""Per-node writes on a node a controller manages are explicit (`--force`).

A controller reconciles its nodes: a per-node `config apply` is reverted within moments, and a
per-node start or stop of a fleet program goes behind the controller's back. So fleetctl asks
the agent first (GetInfo says which controllers it heartbeats to and which sections its fleet
revision has) and refuses in one line that says what to do instead. The agent refuses an
unforced per-node ApplyConfig itself too (agent/fleetconfig.py apply_refusal); this check is
for the clearer message and for start/stop, which the agent cannot tell apart from a
controller's in plaintext mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleetvisor.agent.fleetconfig import managed_refusal
from fleetvisor.v1 import agent_pb2 as pb

from .client import CommandError


def fleet_programs_named(names: Sequence[str], sections: Sequence[str]) -> list[str]:
    """The names (as given) that touch a program-level section of the node's fleet revision."""
    owned = set(sections)
    if not owned:
        return []
    return [n for n in names if n == "all" or n.partition(":")[0] in owned]


def check_apply(info: pb.AgentInfo) -> None:
    if info.controllers:
        raise CommandError(managed_refusal(info.node, list(info.controllers), "config apply"))


def check_control(info: pb.AgentInfo, action: str, names: Sequence[str]) -> None:
    if not info.controllers:
        return
    touched = fleet_programs_named(names, info.fleet_sections)
    if touched:
        where = " ".join(f"{info.node}:{'*' if n == 'all' else n}" for n in touched)
        raise CommandError(managed_refusal(info.node, list(info.controllers),
                                           f"{action} of fleet program {', '.join(touched)}",
                                           f"fleetctl {action} {where}"))
