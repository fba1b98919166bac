"""supervisord's state codes. The numbers are wire facts: XML-RPC clients compare them."""

from __future__ import annotations

import enum


class ProcessState(enum.IntEnum):
    STOPPED = 0
    STARTING = 10
    RUNNING = 20
    BACKOFF = 30
    STOPPING = 40
    EXITED = 100
    FATAL = 200
    UNKNOWN = 1000


class SupervisorState(enum.IntEnum):
    FATAL = 2
    RUNNING = 1
    RESTARTING = 0
    SHUTDOWN = -1


STOPPED_STATES = frozenset({ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL,
                            ProcessState.UNKNOWN})
RUNNING_STATES = frozenset({ProcessState.RUNNING, ProcessState.BACKOFF, ProcessState.STARTING})
SIGNALLABLE_STATES = frozenset({ProcessState.RUNNING, ProcessState.STARTING, ProcessState.STOPPING})
# States from which a process may be spawned.
SPAWNABLE_STATES = frozenset({ProcessState.EXITED, ProcessState.FATAL, ProcessState.BACKOFF,
                              ProcessState.STOPPED})
