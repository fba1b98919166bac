"""The fleet as one supervisord: its names and the 4.3 structs, as pure functions.

Every process appears with its node in its group: group ``NODE/GROUP``, name ``NAME``, so the
namespec is ``NODE/GROUP:NAME`` and ``NODE/GROUP:*`` is a group. The stock supervisorctl splits
namespecs on the first ':' only, so '/' passes through its status, start, stop, restart, tail and
pid unchanged, and node names can never hold a '/' (identity.check_name), so the first one ends
the node. (Interactive tab completion is readline's: it breaks words at '/', so it completes a
whole name from its first letters but not after a typed '/'.)

A node whose state this controller cannot follow keeps its processes listed, as UNKNOWN, with
a description that says why: scripts and dashboards must never see a node silently vanish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from fleetvisor.agent.faults import Fault, FaultError

from .processes import ProcessResult, ProcessView

NODE_SEP = "/"
UNKNOWN = 1000  # supervisord's ProcessStates.UNKNOWN
SUCCESS = int(Fault.SUCCESS)


@dataclass(frozen=True)
class FleetName:
    """What a supervisor namespec means here: one node and the agent's own namespec on it.
    `spec` is "" for the whole node (never asked for by stock clients, but ``NODE/`` reads so)."""

    node: str
    group: str
    name: str | None  # None: every process of the group

    @property
    def spec(self) -> str:
        """The agent-side name: group:name, group:* or the group."""
        if self.name is None:
            return f"{self.group}:*"
        return f"{self.group}:{self.name}"

    @property
    def pattern(self) -> str:
        """The fleet pattern (namespec.py) that selects exactly this."""
        return f"{self.node}:{self.spec}"


def parse(text: str, *, group_only: bool = False) -> FleetName:
    """``NODE/GROUP:NAME``, ``NODE/GROUP:*``, or ``NODE/NAME`` (a process whose group has its name,
    as supervisord reads a bare name). BAD_NAME for anything else, quoting what was given."""
    node, sep, rest = text.partition(NODE_SEP)
    if not sep or not node or not rest:
        raise FaultError(Fault.BAD_NAME, text)
    group, colon, name = rest.partition(":")
    if not group:
        raise FaultError(Fault.BAD_NAME, text)
    if group_only:
        return FleetName(node, group, None)
    if not colon:
        return FleetName(node, group, group)
    return FleetName(node, group, None if name in ("", "*") else name)


def fleet_group(node: str, group: str) -> str:
    return f"{node}{NODE_SEP}{group}"


class LiveProcess(ProcessView, Protocol):
    """The fields of an agent's process record (agent_pb2.ProcessInfo) that the structs carry."""

    @property
    def now(self) -> float: ...
    @property
    def spawnerr(self) -> str: ...
    @property
    def exitstatus(self) -> int: ...
    @property
    def stdout_logfile(self) -> str: ...
    @property
    def stderr_logfile(self) -> str: ...


def process_info(node: str, p: LiveProcess) -> dict[str, object]:
    """supervisord 4.3's getProcessInfo struct: the same keys, types and state numbers."""
    return {"name": p.name, "group": fleet_group(node, p.group), "start": int(p.start), "stop": int(p.stop),
            "now": int(p.now), "state": _state_code(p.state), "statename": p.statename, "spawnerr": p.spawnerr,
            "exitstatus": p.exitstatus, "logfile": p.stdout_logfile,  # the pre-3.0 name, still sent
            "stdout_logfile": p.stdout_logfile, "stderr_logfile": p.stderr_logfile, "pid": p.pid,
            "description": p.description}


# The wire's ProcessState numbers (processes.ProcState) as supervisord numbers them.
_STATE_CODES = {0: UNKNOWN, 1: 0, 2: 10, 3: 20, 4: 30, 5: 40, 6: 100, 7: 200, 8: UNKNOWN}


def _state_code(state: int) -> int:
    return _STATE_CODES.get(int(state), UNKNOWN)


def down_info(node: str, proc: LiveProcess, why: str, now: float) -> dict[str, object]:
    """The struct of a process on a node this controller cannot follow: its last known facts,
    state UNKNOWN, pid 0 (not known now), and why in the description."""
    info = process_info(node, proc)
    info.update(state=UNKNOWN, statename="UNKNOWN", pid=0, now=int(now), description=why)
    return info


def unknown_node_info(node: str, why: str, now: float) -> dict[str, object]:
    """The one struct of a node this controller has no process state of (it has been down since
    this controller started): group ``NODE/*``, name ``*``, so it is listed, not silently missing."""
    return {"name": "*", "group": fleet_group(node, "*"), "start": 0, "stop": 0, "now": int(now),
            "state": UNKNOWN, "statename": "UNKNOWN", "spawnerr": "", "exitstatus": 0, "logfile": "",
            "stdout_logfile": "", "stderr_logfile": "", "pid": 0,
            "description": f"{why}; none of its processes is known to this controller yet"}


def down_reason(node: str, up: bool, error: str, last_heartbeat: float, now: float | None = None) -> str:
    """One line for a node whose live state is not followed: down (no heartbeat within its TTL)
    or up but unreachable from this controller."""
    now = time.time() if now is None else now
    ago = f"last heartbeat {max(0, int(now - last_heartbeat))}s ago" if last_heartbeat else "no heartbeat seen"
    if not up:
        return f"node {node} is down: {ago}"
    return f"node {node} is unreachable from this controller ({error or 'not connected'}); {ago}"


def result_dict(node: str, result: ProcessResult) -> dict[str, object]:
    """A start/stop/signal outcome as supervisord's status struct (name, group, status, description)."""
    group, _, name = result.name.partition(":")
    return {"name": name or group, "group": fleet_group(node, group), "status": fault_code(result),
            "description": result.description if not result.ok else _success(result)}


def _success(result: ProcessResult) -> str:
    return result.description or "OK"


def fault_code(result: ProcessResult) -> int:
    if result.ok:
        return SUCCESS
    try:
        return int(Fault[result.status])
    except KeyError:
        return int(Fault.FAILED)


def failed_dict(node: str, proc: ProcessView, why: str) -> dict[str, object]:
    """A process on a node the command could not reach."""
    return {"name": proc.name, "group": fleet_group(node, proc.group), "status": int(Fault.FAILED),
            "description": why}


# getAllConfigInfo keys of supervisord 4.3, with its defaults for what the controller does not
# follow (the agents' parsed program options stay on the agents; fleetctl shows them).
CONFIG_DEFAULTS: dict[str, object] = {
    "autostart": True, "directory": "none", "uid": "none", "command": "", "exitcodes": [0], "group_prio": 999,
    "killasgroup": False, "process_prio": 999, "redirect_stderr": False, "startretries": 3, "startsecs": 1,
    "stdout_capture_maxbytes": 0, "stdout_events_enabled": False, "stdout_logfile_backups": 10,
    "stdout_logfile_maxbytes": 52428800, "stdout_syslog": False, "stopsignal": 15, "stopwaitsecs": 10,
    "stderr_capture_maxbytes": 0, "stderr_events_enabled": False, "stderr_logfile_backups": 10,
    "stderr_logfile_maxbytes": 52428800, "stderr_syslog": False, "serverurl": "auto",
}


def config_info(node: str, proc: LiveProcess) -> dict[str, object]:
    info = dict(CONFIG_DEFAULTS)
    info.update(name=proc.name, group=fleet_group(node, proc.group), inuse=True,
                stdout_logfile=proc.stdout_logfile, stderr_logfile=proc.stderr_logfile)
    return info
