"""The main log and process logs: paths, reads, tails and clears."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..caller import Caller
from ..faults import Fault, FaultError
from ..logfiles import LogReadError, read_log, tail_log
from .names import _lookup_process, _processes_by_priority, _spec, ensure_running
from .results import ProcessResult
from .settle import _each, _everything

if TYPE_CHECKING:
    from ..process import Process
    from ..supervisor import Supervisor


def _read(path: str | None, offset: int, length: int) -> bytes:
    try:
        return read_log(path, offset, length)
    except LogReadError as exc:
        raise FaultError(Fault[exc.fault]) from None


def main_log_path(core: Supervisor, caller: Caller) -> str | None:
    """The main log's file; None when it goes nowhere but stdout."""
    return core.log.path


def read_main_log(core: Supervisor, caller: Caller, offset: int, length: int) -> bytes:
    ensure_running(core)
    path = main_log_path(core, caller)
    if path is None or not os.path.exists(path):
        raise FaultError(Fault.NO_FILE, path)
    return _read(path, offset, length)


def clear_main_log(core: Supervisor, caller: Caller) -> bool:
    ensure_running(core)
    path = core.log.path
    if path is None or not os.path.exists(path):
        raise FaultError(Fault.NO_FILE)
    try:
        os.remove(path)
    except OSError:
        raise FaultError(Fault.FAILED) from None
    # Like supervisord, this line goes to the file being removed (and to stdout with -n).
    core.log.info("reopening log file")
    try:
        core.log.reopen()
    except OSError:
        raise FaultError(Fault.FAILED) from None
    return True


LOG_CHANNELS = ("stdout", "stderr")


def log_path(core: Supervisor, caller: Caller, namespec: str, channel: str = "stdout", *,
             existing: bool = False) -> str | None:
    """The file a process's stdout or stderr log is written to; None if it has none.
    BAD_NAME for a name that is no process, BAD_ARGUMENTS for another channel; with
    `existing`, NO_FILE unless the file is there now."""
    proc = _lookup_process(core, namespec)
    if channel not in LOG_CHANNELS:
        raise FaultError(Fault.BAD_ARGUMENTS, f"no log channel {channel!r}")
    path = proc.stdout_logfile if channel == "stdout" else proc.stderr_logfile
    if existing and (path is None or not os.path.exists(path)):
        raise FaultError(Fault.NO_FILE, path)
    return path


def read_process_log(core: Supervisor, caller: Caller, namespec: str, channel: str, offset: int,
                     length: int) -> bytes:
    ensure_running(core)
    return _read(log_path(core, caller, namespec, channel, existing=True), offset, length)


def tail_process_log(core: Supervisor, caller: Caller, namespec: str, channel: str, offset: int,
                     length: int) -> tuple[bytes, int, bool]:
    ensure_running(core)
    return tail_log(log_path(core, caller, namespec, channel), offset, length)


def clear_process_logs(core: Supervisor, caller: Caller, namespec: str) -> bool:
    ensure_running(core)
    proc = _lookup_process(core, namespec)
    try:
        proc.clear_logs()
    except OSError:
        raise FaultError(Fault.FAILED, namespec) from None
    return True


async def clear_all_process_logs(core: Supervisor, caller: Caller) -> list[ProcessResult]:
    ensure_running(core)

    def clear(proc: Process) -> None:
        try:
            proc.clear_logs()
        except OSError:
            raise FaultError(Fault.FAILED, _spec(proc)) from None

    return await _each(core, _processes_by_priority(core), _everything, clear)

