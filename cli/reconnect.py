"""A controller stream that outlives a controller restart or failover, for `status --watch`,
`ops watch` and `tail -f`.

A stream that breaks or ends after it has answered (a restart, a failover, a cut connection) is
opened again with capped backoff while the caller's last view stays up; one that never answered
is an error at once, so a wrong address or an unknown operation fails fast. An outage is told
once, when it begins, and the note is withdrawn when messages flow again: a watch left running
overnight does not fill the screen or a log with one line per attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from rich.text import Text

from fleetvisor.controller.backoff import Backoff

from .client import CommandError, Controller, NoController

FIRST_RETRY = 0.5
RETRY_CAP = 5.0

Note = Callable[[Text | None], None]


def reconnecting(controller: Controller, method: str, request: Any, *, what: str, hint: str, note: Note,
                 done: Callable[[Any], bool] = lambda message: False, fatal: Collection[int] = (),
                 again: Callable[[], Any] | None = None, relayed: bool = False) -> Iterator[Any]:
    """The messages of `controller.method(request)` across reconnects, until `done(message)`.
    `again()`, if given, is the request of each reconnect (a log stream resumes where it was).
    `relayed`: the controller relays the stream from an agent, and its word that the agent is
    unavailable ends the watch (the controller going away does not).

    `what` names the stream in "controller X ended the <what>"; `hint` says what Ctrl-C does.
    `note(text)` shows that the view is stale and why, `note(None)` that it is live again.
    A CommandError whose exit code is in `fatal` ends the watch even after answers (an
    operation that no longer exists will not come back by asking again); no controller
    answering never does, whatever its code: they may come back.
    """
    backoff = Backoff(initial=FIRST_RETRY, cap=RETRY_CAP)
    answered = stale = False
    while True:
        stream = controller.stream(method, again() if again is not None and answered else request, timeout=None)
        try:
            for message in stream:
                if stale:
                    note(None)
                    stale = False
                answered = True
                backoff.reset()
                yield message
                if done(message):
                    return
            problem = f"controller {controller.address} ended the {what}"  # the one that was streaming
            if not answered:
                raise CommandError(problem)
        except CommandError as exc:
            if not answered or (exc.exit_code in fatal and not isinstance(exc, NoController)) or \
                    (relayed and exc.unavailable):
                raise
            problem = str(exc)
        finally:
            stream.close()
        if not stale:
            note(Text(f"{problem}; reconnecting ({hint})", style="bold red"))
            stale = True
        time.sleep(backoff.next())
