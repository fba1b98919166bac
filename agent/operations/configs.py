"""Config changes and daemon control: reread, add/remove group, restart, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

from ..caller import Caller
from ..config.errors import ConfigError
from ..detached import carried_through
from ..faults import Fault, FaultError
from .names import ensure_running

if TYPE_CHECKING:
    from ..config.model import GroupConfig
    from ..process import Process
    from ..supervisor import Supervisor


async def reread(core: Supervisor, caller: Caller) -> tuple[list[str], list[str], list[str]]:
    """reloadConfig: parse the file again (off the loop); (added, changed, removed) group names."""
    ensure_running(core)
    try:
        return await core.reread_off_loop()
    except ConfigError as exc:
        raise FaultError(Fault.CANT_REREAD, exc) from None


# Processes started (or groups added or removed) between two yields to the loop: a group may
# have numprocs=1000 and a revision thousands of groups, and status calls and signals are
# answered between slices.
SLICE = 20


async def add_group(core: Supervisor, caller: Caller, name: str) -> bool:
    """addProcessGroup: make a group of the last reread live; it autostarts as at boot, in
    slices. Carried through: a caller that goes away mid-way leaves no process behind unstarted."""
    ensure_running(core)
    config = next((c for c in core.group_configs if c.name == name), None)
    if config is None:
        raise FaultError(Fault.BAD_NAME, name)
    return await add_group_config(core, caller, config)


async def add_group_config(core: Supervisor, caller: Caller, config: GroupConfig,
                           logs: dict[tuple[str, str], str] | None = None) -> bool:
    """add_group of a config at hand (an apply adds thousands: no search for each). Its AUTO
    log files are made in a worker thread first, unless the caller made them (`logs`)."""
    if config.name in core.groups:
        raise FaultError(Fault.ALREADY_ADDED, config.name)
    if logs is None:
        logs = await carried_through(asyncio.to_thread(core.make_auto_logs, config))
    if not core.add_group(config, logs):  # added by another caller meanwhile
        for path in logs.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise FaultError(Fault.ALREADY_ADDED, config.name)
    await carried_through(_autostart(list(core.groups[config.name].processes.values())))
    return True


async def _autostart(procs: list[Process]) -> None:
    for i, proc in enumerate(procs, 1):
        proc.advance()
        if i % SLICE == 0:
            await asyncio.sleep(0)


def remove_group(core: Supervisor, caller: Caller, name: str) -> bool:
    ensure_running(core)
    if name not in core.groups:
        raise FaultError(Fault.BAD_NAME, name)
    if not core.remove_group(name):
        raise FaultError(Fault.STILL_RUNNING, name)
    return True


async def restart_daemon(core: Supervisor, caller: Caller) -> bool:
    """Restart the daemon; a config file that no longer parses is refused, not obeyed."""
    ensure_running(core)
    try:
        await core.reload_config_off_loop()  # logs a refusal in the main log, as SIGHUP does
    except ConfigError as exc:
        raise FaultError(Fault.CANT_REREAD, exc) from None
    core.restart()
    return True


async def reexec_daemon(core: Supervisor, caller: Caller, *, dry_run: bool = False) -> str:
    """Re-exec the agent in place: every process keeps running (see reexec.trigger).
    `dry_run`: only the checks. Returns the agent version the new agent names ("" if unsaid)."""
    ensure_running(core)
    if core.reexec is None:
        raise FaultError(Fault.FAILED, "re-exec is not available in this agent")
    return await core.reexec.request(caller, dry_run=dry_run)


def shutdown(core: Supervisor, caller: Caller) -> bool:
    ensure_running(core)
    core.shutdown()
    return True

