"""A small made-up stdout log per virtual process, for TailLog.

It behaves like a log file that rotates: offsets are absolute and only grow; the oldest bytes
are dropped past `capacity` (a reader asking before them starts at the oldest kept byte, and
is told the file was truncated). Lines come from what happens to the process (spawned,
exited) and, when read, one "handled requests" line per `every` seconds of uptime since the
last read, so a followed log grows while the process runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

CAPACITY = 16 * 1024
EVERY = 5.0        # seconds of uptime per synthetic activity line
MAX_CATCH_UP = 20  # lines added by one read at most


def stamp(now: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f",{int(now * 1000) % 1000:03d}"


@dataclass
class SyntheticLog:
    name: str
    capacity: int = CAPACITY
    data: bytearray = field(default_factory=bytearray)
    base: int = 0  # absolute offset of data[0]
    requests: int = 0
    running_since: float | None = None
    written_until: float = 0.0

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def line(self, now: float, text: str) -> None:
        self.data += f"{stamp(now)} {self.name}: {text}\n".encode()
        if len(self.data) > self.capacity:
            cut = len(self.data) - self.capacity
            del self.data[:cut]
            self.base += cut

    def started(self, now: float, pid: int) -> None:
        self.running_since = self.written_until = now
        self.line(now, f"starting with pid {pid}")

    def ended(self, now: float, how: str) -> None:
        self.catch_up(now)
        self.running_since = None
        self.line(now, how)

    def catch_up(self, now: float) -> None:
        if self.running_since is None:
            return
        lines = min(MAX_CATCH_UP, int((now - self.written_until) // EVERY))
        for i in range(lines):
            self.requests += 37
            self.line(self.written_until + EVERY * (i + 1), f"handled {self.requests} requests")
        if lines:
            self.written_until = max(self.written_until + EVERY * lines, now - EVERY)

    def read(self, offset: int, now: float, last_bytes: int = 0) -> tuple[bytes, int, bool]:
        """(data, offset just after it, truncated) from `offset`, or the last `last_bytes`."""
        self.catch_up(now)
        start = max(self.base, self.end - last_bytes) if last_bytes else offset
        truncated = start < self.base or start > self.end
        if truncated:
            start = self.base
        return bytes(self.data[start - self.base:]), self.end, truncated
