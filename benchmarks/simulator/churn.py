"""What goes wrong in the fleet, and when: the random choices of the churn, without I/O.

Flaps and outages are Poisson arrivals at the configured fleet-wide rates (each simulator
process takes its share), so they do not come in step. A flap picks a RUNNING process that
autorestart brings back; some flaps also die once before startsecs on the way back (BACKOFF
then a retry). An outage picks a node that is up, keeps it away for about `outage_seconds`,
and brings it back either as the same agent run (a cut link) or as a new run (a reboot).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class ChurnRates:
    flaps_per_second: float = 0.0    # across the whole fleet
    outages_per_minute: float = 0.0  # across the whole fleet
    outage_seconds: float = 20.0     # mean time away (uniform over half to one and a half of it)
    backoff_share: float = 0.3       # flaps whose first restart also dies (through BACKOFF)
    reboot_share: float = 0.5        # outages that end with a new agent run

    def share(self, parts: int) -> ChurnRates:
        """This rate split over `parts` simulator processes."""
        return ChurnRates(self.flaps_per_second / parts, self.outages_per_minute / parts, self.outage_seconds,
                          self.backoff_share, self.reboot_share)


@dataclass(frozen=True)
class Outage(Generic[T]):
    node: T
    seconds: float
    reboot: bool


class Churn:
    def __init__(self, rates: ChurnRates, rng: random.Random) -> None:
        self.rates = rates
        self.rng = rng

    def next_flap(self) -> float | None:
        """Seconds until the next flap, or None when flaps are off."""
        rate = self.rates.flaps_per_second
        return self.rng.expovariate(rate) if rate > 0 else None

    def next_outage(self) -> float | None:
        rate = self.rates.outages_per_minute / 60
        return self.rng.expovariate(rate) if rate > 0 else None

    def through_backoff(self) -> bool:
        return self.rng.random() < self.rates.backoff_share

    def pick(self, candidates: Sequence[T]) -> T | None:
        return self.rng.choice(candidates) if candidates else None

    def outage(self, up_nodes: Sequence[T]) -> Outage[T] | None:
        node = self.pick(up_nodes)
        if node is None:
            return None
        seconds = self.rates.outage_seconds * self.rng.uniform(0.5, 1.5)
        return Outage(node, seconds, self.rng.random() < self.rates.reboot_share)
