"""Namespecs ("group:name", "group:*") and the lookups every operation starts from.

Ordering fact kept from supervisord 4.3, because supervisorctl prints results in the order
it gets them: group/all operations act on processes by priority (groups by priority, then
processes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..caller import Caller
from ..faults import Fault, FaultError
from ..states import SupervisorState

if TYPE_CHECKING:
    from ..process import Process
    from ..supervisor import ProcessGroup, Supervisor


def make_namespec(group: str, name: str) -> str:
    """`name` when a process is alone in its same-named group, else `group:name`."""
    return name if group == name else f"{group}:{name}"


def split_namespec(namespec: str) -> tuple[str, str | None]:
    """(group, process); process is None for `group:*` and `group:`."""
    group, colon, name = namespec.partition(":")
    if not colon:
        return namespec, namespec
    return group, (None if name in ("", "*") else name)


def ensure_running(core: Supervisor) -> None:
    """Most calls are refused once the daemon is shutting down or restarting."""
    if core.mood < SupervisorState.RUNNING:
        raise FaultError(Fault.SHUTDOWN_STATE)


def _lookup(core: Supervisor, namespec: str) -> tuple[ProcessGroup, Process | None]:
    group_name, name = split_namespec(namespec)
    group = core.groups.get(group_name)
    if group is None:
        raise FaultError(Fault.BAD_NAME, namespec)
    if name is None:
        return group, None
    proc = group.processes.get(name)
    if proc is None:
        raise FaultError(Fault.BAD_NAME, namespec)
    return group, proc


def _lookup_process(core: Supervisor, namespec: str) -> Process:
    proc = _lookup(core, namespec)[1]
    if proc is None:
        raise FaultError(Fault.BAD_NAME, namespec)
    return proc


def find_process(core: Supervisor, caller: Caller, namespec: str) -> Process:
    """The one process `name` or `group:name` names; BAD_NAME for anything else (`g:*` too)."""
    return _lookup_process(core, namespec)


def resolve(core: Supervisor, caller: Caller, names: Iterable[str]) -> list[Process]:
    """The processes that names name (`name`, `group:name`, `group:*`, `all` for every one),
    each once, in priority order. Every name is checked before anything is returned: one
    unknown name is a BAD_NAME for the whole request, so nothing is half done."""
    names = list(names)
    ordered = _processes_by_priority(core)
    if "all" in names:
        return ordered
    chosen: set[Process] = set()
    for spec in names:
        group, proc = _lookup(core, spec)
        chosen.update([proc] if proc is not None else group.processes.values())
    return [p for p in ordered if p in chosen]


def _processes_by_priority(core: Supervisor) -> list[Process]:
    return [p for g in core.ordered_groups() for p in _by_priority(g)]


def _by_priority(group: ProcessGroup) -> list[Process]:
    return sorted(group.processes.values(), key=lambda p: p.config.priority)


def _spec(proc: Process) -> str:
    return make_namespec(proc.group.name, proc.name)

