"""Input to processes and remote communication events."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..caller import Caller
from ..faults import Fault, FaultError
from .names import _lookup_process, ensure_running

if TYPE_CHECKING:
    from ..supervisor import Supervisor


def send_stdin(core: Supervisor, caller: Caller, namespec: str, data: bytes) -> bool:
    ensure_running(core)
    proc = _lookup_process(core, namespec)
    if not proc.pid or proc.lifecycle.killing:
        raise FaultError(Fault.NOT_RUNNING, namespec)
    try:
        proc.write_stdin(data)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise FaultError(Fault.NO_FILE, namespec) from None
        raise
    return True


def send_remote_comm(core: Supervisor, caller: Caller, type_: str, data: str) -> bool:
    core.publish_remote_comm(type_, data)
    return True

