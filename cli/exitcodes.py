"""fleetctl's exit statuses, supervisorctl's where the meaning is the same.

One place decides them for both modes, so `fleetctl restart web-1:app` and
`fleetctl --node web-1 restart app` end the same way for the same outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetvisor.v1 import controller_pb2 as cpb

EXIT_GENERIC = 1
USAGE = 2
EXIT_NOT_RUNNING = 7  # a start/stop left a process dead (spawn error, abnormal termination)
STATUS_NOT_RUNNING = 3
STATUS_UNKNOWN = 4
DEAD_PROGRAM = {"SPAWN_ERROR", "ABNORMAL_TERMINATION", "NOT_RUNNING"}
STOPPED_STATES = {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}

# per action: the fault that is no failure (a stop of a stopped process, as supervisorctl)
IGNORED_FAULT = {"start": "ALREADY_STARTED", "stop": "NOT_RUNNING", "restart": "", "signal": ""}


def results_code(results: Iterable, action: str) -> int:
    """ProcessResults of one action: for start/stop/restart 7 if a process ended dead, 1 for
    another fault; for signal any fault is 1 (signalling a stopped process kills nothing)."""
    ignored = IGNORED_FAULT[action]
    code = 0
    for r in results:
        if r.ok or (ignored and r.status == ignored):
            continue
        if action != "signal" and r.status in DEAD_PROGRAM:
            code = EXIT_NOT_RUNNING
        else:
            code = max(code, EXIT_GENERIC)
    return code


def node_result_code(node: cpb.NodeResult, action: str) -> int:
    """One NodeResult of a fleet Control: a node that could not be driven is at least 1."""
    code = results_code(node.results, action)
    return max(code, EXIT_GENERIC) if node.error else code


def control_code(nodes: Iterable, action: str) -> int:
    """The whole fleet Control: the worst node's code (7 over 1 over 0)."""
    return max((node_result_code(n, action) for n in nodes), default=0)


def processes_code(processes: Iterable) -> int:
    """supervisorctl status: 3 when any process is in a stopped state, else 0."""
    return STATUS_NOT_RUNNING if any(p.statename in STOPPED_STATES for p in processes) else 0


def fleet_status_code(nodes: Sequence[cpb.NodeProcesses], selected_by_labels: bool = False) -> int:
    """Fleet status: 4 when labels select no node (names that match nothing are the
    controller's NOT_FOUND, also 4), 3 for anything not known to be running (a stopped
    process, or a node down or unreachable, whose state is only a memory), else 0."""
    if selected_by_labels and not nodes:
        return STATUS_UNKNOWN
    if any(not (n.node.up and n.node.reachable) for n in nodes):
        return STATUS_NOT_RUNNING
    return max((processes_code(n.processes) for n in nodes), default=0)


def summary_code(summary: cpb.FleetSummary, selected_by_labels: bool = False) -> int:
    """fleet_status_code's meaning, from a FleetSummary's counts instead of the rows."""
    if selected_by_labels and not summary.nodes:
        return STATUS_UNKNOWN
    if summary.nodes_up < summary.nodes or summary.nodes_reachable < summary.nodes:
        return STATUS_NOT_RUNNING
    stopped = any(c.state in STOPPED_STATES for g in summary.groups for c in g.states)
    return STATUS_NOT_RUNNING if stopped else 0


def status_code(reply: cpb.FleetStatus, selected_by_labels: bool = False) -> int:
    """A GetStatus answer, the summary or the rows, whichever the controller sent."""
    if reply.HasField("summary"):
        return summary_code(reply.summary, selected_by_labels)
    return fleet_status_code(reply.nodes, selected_by_labels)
