"""A numbered record of the core's recent changes, so stream clients can resume without a gap.

Every change the core publishes gets the next sequence number and is kept in a bounded ring.
A watcher that reconnects with the last number it saw gets everything after it, or, if that
fell out of the ring (or belongs to an earlier run of the agent), a fresh snapshot first.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .supervisor import Change, Supervisor

DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True)
class Entry:
    sequence: int
    time: float
    change: Change


class Journal:
    def __init__(self, core: Supervisor, capacity: int = DEFAULT_CAPACITY) -> None:
        self.run_id = uuid.uuid4().hex
        self._entries: collections.deque[Entry] = collections.deque(maxlen=capacity)
        self._sequence = 0
        self._appended = asyncio.Event()
        self._unsubscribe = core.subscribe(self._append)

    def resume(self, run_id: str, sequence: int) -> None:
        """Carry on the numbering of the agent this one re-exec'd from: a watcher that saw
        up to `sequence` resumes without a snapshot (nothing happened during the exec)."""
        if run_id and not self._entries:
            self.run_id, self._sequence = run_id, sequence

    @property
    def last_sequence(self) -> int:
        return self._sequence

    def _append(self, change: Change) -> None:
        self._sequence += 1
        self._entries.append(Entry(self._sequence, time.time(), change))
        # Wake every waiting stream; later waits use a fresh event.
        self._appended.set()
        self._appended = asyncio.Event()

    def can_resume(self, after: int, run_id: str = "") -> bool:
        """True if every entry after `after` is still held (and it is this run's number)."""
        if after == 0 or (run_id and run_id != self.run_id) or after > self._sequence:
            return False
        oldest = self._entries[0].sequence if self._entries else self._sequence + 1
        return after >= oldest - 1

    async def follow(self, after: int) -> AsyncIterator[Entry]:
        """Entries with sequence > after, then each new one as it comes. Never ends by itself."""
        position = after
        while True:
            if self._entries and self._entries[-1].sequence > position:
                skip = max(0, position + 1 - self._entries[0].sequence)  # sequences are contiguous
                for entry in list(itertools.islice(self._entries, skip, None)):
                    position = entry.sequence
                    yield entry
            else:
                await self._appended.wait()

    def close(self) -> None:
        self._unsubscribe()
