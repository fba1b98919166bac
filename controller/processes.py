"""An agent's processes as the controller's core sees them.

The live process records are the agent client's own (livestate.py keeps what each agent
streams): the core reads them through `ProcessView` and hands them to the gRPC face as they
are. Converting every process of the fleet into a dataclass and back on each status request
would cost several times the whole request, so only the fields the core reads are typed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol


class ProcState(IntEnum):
    """The agent's process states, numbered as on the wire."""

    UNSPECIFIED = 0
    STOPPED = 1
    STARTING = 2
    RUNNING = 3
    BACKOFF = 4
    STOPPING = 5
    EXITED = 6
    FATAL = 7
    UNKNOWN = 8


class ProcessView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def namespec(self) -> str: ...
    @property
    def state(self) -> int: ...
    @property
    def statename(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def description(self) -> str: ...
    @property
    def health(self) -> int: ...  # agent_pb2.Health: HEALTH_UNSPECIFIED without a health check
    @property
    def health_message(self) -> str: ...
    @property
    def exited_unexpectedly(self) -> bool: ...  # EXITED with a status not in its exitcodes
    @property
    def start(self) -> float: ...
    @property
    def stop(self) -> float: ...


class ProcessList(list["ProcessView"]):
    """A node's processes in namespec order, as the core keeps them between two changes: the
    same object until one of them changes, so that what a reader works out from them (a
    summary's counts, `digest`) can be kept on the list and is dropped with it. Read only."""

    __slots__ = ("digest",)

    def __init__(self, processes: list[ProcessView]) -> None:
        super().__init__(processes)
        self.digest: object = None


@dataclass(frozen=True)
class ProcessResult:
    """One process's outcome of a start, stop, restart or signal."""

    name: str  # namespec
    ok: bool
    status: str = ""  # supervisord's fault name when not ok
    description: str = ""
    state: int = ProcState.UNSPECIFIED


class AgentCallFailed(Exception):
    """A call to an agent failed; the message is one line (unreachable, timed out, ...).
    `refused`: the agent answered and refused the request as it is (bad input, not allowed),
    rather than failing to carry it out."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused
