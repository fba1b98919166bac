"""What the loop says when a listening socket cannot accept (no descriptor left).

asyncio does the right thing, pausing that socket for a second and trying again, but reports
every failure through the loop's exception handler: a traceback on stderr each second while
the descriptor table is full. This handler makes it one main-log line per socket a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..mainlog import MainLog

ACCEPT_FAILED = "socket.accept() out of system resource"  # asyncio's message for it
REPEAT_AFTER = 60.0


class AcceptTrouble:
    """The loop's exception handler: accept failures to the main log, the rest as before."""

    def __init__(self, log: MainLog, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.clock = clock
        self._said: dict[str, float] = {}
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILED:
            if self._previous is not None:
                self._previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        where = _address(context.get("socket"))
        now = self.clock()
        if now - self._said.get(where, float("-inf")) < REPEAT_AFTER:
            return
        self._said[where] = now
        self.log.warn(f"cannot accept connections on {where}: {context.get('exception')}; "
                      "retrying every second (said once a minute while it lasts)")


def _address(sock: Any) -> str:
    try:
        name = sock.getsockname()
    except (AttributeError, OSError):
        return "a listening socket"
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return str(name) or "a unix socket"
