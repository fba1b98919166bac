"""Config changes and daemon control: reread, add/remove group, restart, shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..caller import Caller
from ..config.errors import ConfigError
from ..faults import Fault, FaultError
from .names import ensure_running

if TYPE_CHECKING:
    from ..supervisor import Supervisor


async def reread(core: Supervisor, caller: Caller) -> tuple[list[str], list[str], list[str]]:
    """reloadConfig: parse the file again (off the loop); (added, changed, removed) group names."""
    ensure_running(core)
    try:
        return await core.reread_off_loop()
    except ConfigError as exc:
        raise FaultError(Fault.CANT_REREAD, exc) from None


def add_group(core: Supervisor, caller: Caller, name: str) -> bool:
    """addProcessGroup: make a group of the last reread live; it autostarts as at boot."""
    ensure_running(core)
    for config in core.group_configs:
        if config.name == name:
            if not core.add_group(config):
                raise FaultError(Fault.ALREADY_ADDED, name)
            for proc in core.groups[name].processes.values():
                proc.advance()
            return True
    raise FaultError(Fault.BAD_NAME, name)


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


def shutdown(core: Supervisor, caller: Caller) -> bool:
    ensure_running(core)
    core.shutdown()
    return True

