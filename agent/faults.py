"""supervisord's fault codes: wire facts that every face of the agent reports the same way.

XML-RPC sends them as `<fault>` structs, gRPC will map them to its status details, and
supervisorctl decides its exit codes on the numbers, so they never change.
"""

from __future__ import annotations

import enum


class Fault(enum.IntEnum):
    UNKNOWN_METHOD = 1
    INCORRECT_PARAMETERS = 2
    BAD_ARGUMENTS = 3
    SIGNATURE_UNSUPPORTED = 4
    SHUTDOWN_STATE = 6
    BAD_NAME = 10
    BAD_SIGNAL = 11
    NO_FILE = 20
    NOT_EXECUTABLE = 21
    FAILED = 30
    ABNORMAL_TERMINATION = 40
    SPAWN_ERROR = 50
    ALREADY_STARTED = 60
    NOT_RUNNING = 70
    SUCCESS = 80
    ALREADY_ADDED = 90
    STILL_RUNNING = 91
    CANT_REREAD = 92


class FaultError(Exception):
    """An operation failed with a supervisord fault; `text` is the wire fault string,
    ``NAME`` or ``NAME: extra``."""

    def __init__(self, code: Fault, extra: object = None) -> None:
        self.code = Fault(code)
        self.text = self.code.name if extra is None else f"{self.code.name}: {extra}"
        super().__init__(self.text)
