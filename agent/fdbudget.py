"""The daemon's file descriptors: how many are left, and the few a spawn may not take.

A spawn takes up to `SPAWN_PEAK` descriptors at once (three pipes, two log files, the pipe
`subprocess` reports an exec failure on, the pidfd) and keeps `SPAWN_KEEPS`. Spawning until
the table is full would leave none to accept an XML-RPC, HTTP or gRPC connection or to open
a log to answer it: the daemon would be up and unreachable. So a spawn that would leave fewer
than `FD_RESERVE` free is refused, with supervisord's words for an EMFILE.

Counting the open descriptors lists /proc/self/fd, which costs milliseconds with thousands
open; it is done only when the estimate (the last count plus what spawns since kept) comes
near the limit, or when the count is older than a second (connections come and go too).
"""

from __future__ import annotations

import os
import resource
import time

FD_RESERVE = 16
SPAWN_PEAK = 11
SPAWN_KEEPS = 6
# How far from the limit an estimate must be to be trusted without a count.
_SLACK = 64
_MAX_AGE = 1.0


def open_fds() -> int | None:
    """The descriptors this process has open, or None when /proc cannot tell."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError:
        return None


def fd_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class FdBudget:
    """Whether the next spawn leaves the reserve free."""

    def __init__(self) -> None:
        self._estimate = 0
        self._counted_at = float("-inf")

    def spawn_fits(self) -> bool:
        limit = fd_limit()
        if limit is None:
            return True
        needed = SPAWN_PEAK + FD_RESERVE
        now = time.monotonic()
        if limit - self._estimate < needed + _SLACK or now - self._counted_at > _MAX_AGE:
            count = open_fds()
            if count is None:
                return True
            self._estimate, self._counted_at = count, now
        if limit - self._estimate < needed:
            return False
        self._estimate += SPAWN_KEEPS
        return True


BUDGET = FdBudget()
