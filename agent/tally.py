"""Counts the agent keeps for its metrics (metrics.py): plain integers bumped where things
happen, read only when someone scrapes. Nothing is formatted or labelled on the hot paths."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ByteCount:
    """Bytes a child wrote to one of its logs (every run), counted by the log (childlog.py)."""

    bytes: int = 0


@dataclass
class ProcessTally:
    """One configured process, since the agent loaded it."""

    starts: int = 0  # spawns that made a process
    exits_expected: int = 0  # exited with an exitcodes= status
    exits_unexpected: int = 0  # any other exit, or one before startsecs
    log_bytes: dict[str, ByteCount] = field(default_factory=lambda: {"stdout": ByteCount(), "stderr": ByteCount()})


@dataclass
class AgentTally:
    events_delivered: int = 0  # events handed to event listeners
    rpc_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (face, method) -> calls
