"""Capped exponential backoff for reconnects and retries."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Each delay doubles from `initial` up to `cap`; `reset()` once the thing works again.
    `jitter` (a fraction) spreads many clients that lost the same server apart."""

    initial: float = 0.1
    cap: float = 5.0
    jitter: float = 0.0
    current: float = 0.0

    def next(self) -> float:
        self.current = self.initial if self.current == 0 else min(self.cap, self.current * 2)
        return self.current * random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else self.current

    def reset(self) -> None:
        self.current = 0.0
