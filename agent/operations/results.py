"""The values operations return; each face converts them to its wire shape."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass

from ..faults import Fault
from ..states import ProcessState, SupervisorState
from .names import make_namespec


def _installed_version() -> str:
    """fleetvisor's version as its installed distribution says: what a package upgrade changes,
    and what a re-exec's dry run names (a rolling upgrade expects it back)."""
    try:
        return importlib.metadata.version("fleetvisor")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0.1.0"


AGENT_VERSION = _installed_version()
API_VERSION = "3.0"
SUPERVISOR_VERSION = "4.3.0"  # the supervisord the agent stands in for (-v, getSupervisorVersion)


@dataclass(frozen=True)
class ProcessResult:
    """The outcome for one process of an operation on several."""

    name: str
    group: str
    status: Fault
    description: str
    state: ProcessState  # the process's state when its outcome was known

    @property
    def ok(self) -> bool:
        return self.status == Fault.SUCCESS

    @property
    def namespec(self) -> str:
        return make_namespec(self.group, self.name)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "group": self.group, "status": int(self.status),
                "description": self.description}


@dataclass(frozen=True)
class Outcome:
    """What `start`, `stop` and `signal` did with a name. A name of one process either
    succeeded (no results) or raised; a group name (`g:*`) gives a result per process."""

    group: bool
    results: tuple[ProcessResult, ...] = ()


@dataclass(frozen=True)
class AgentInfo:
    """The agent's description of itself, as GetInfo, the heartbeat and the page show it."""

    node: str
    labels: Mapping[str, str]
    identifier: str
    pid: int
    state: SupervisorState
    started_at: float
    now: float
    applied_revision: str = ""   # "" without a fleet config or before the first revision
    edited_by_hand: bool = False
    agent_version: str = AGENT_VERSION
    supervisor_version: str = SUPERVISOR_VERSION
    api_version: str = API_VERSION

    @property
    def uptime(self) -> float:
        return self.now - self.started_at


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    group: str
    start: int
    stop: int
    now: int
    state: ProcessState
    spawnerr: str
    exitstatus: int
    stdout_logfile: str
    stderr_logfile: str
    pid: int
    description: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "group": self.group, "start": self.start, "stop": self.stop,
                "now": self.now, "state": int(self.state), "statename": self.state.name,
                "spawnerr": self.spawnerr, "exitstatus": self.exitstatus,
                "logfile": self.stdout_logfile,  # the pre-3.0 name, still sent
                "stdout_logfile": self.stdout_logfile, "stderr_logfile": self.stderr_logfile,
                "pid": self.pid, "description": self.description}

