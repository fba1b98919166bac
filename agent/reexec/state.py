"""The handoff file one agent writes for the next: versioned JSON, never pickle.

The writer and the reader may run different Python and fleetvisor versions (that is the point
of a re-exec), so the format is plain JSON with a version number. A reader accepts every
version up to its own (older ones are upgraded by `_UPGRADES`) and refuses newer ones with
one clear line. This module is pure: no descriptors, no processes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

STATE_VERSION = 2


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added the health checks' verdicts to each child: version 1 had none (unknown)."""
    return {**data, "version": 2}


# version -> function that turns a dict of that version into one of the next version
_UPGRADES: dict[int, Any] = {1: _v1_to_v2}


class StateError(Exception):
    """The handoff file cannot be used; the message is one line naming why."""


@dataclass(frozen=True)
class ChildState:
    """One configured process: its lifecycle fields and, while it runs, its pid and pipes."""

    namespec: str  # group:name
    state: str  # a ProcessState name
    pid: int = 0
    started: int | None = None  # the kernel's start time of pid (clock ticks since boot)
    laststart: float = 0.0
    laststop: float = 0.0
    laststopreport: float = 0.0
    delay: float = 0.0
    backoff: int = 0
    killing: bool = False
    exitstatus: int | None = None
    spawnerr: str | None = None
    system_stop: bool = False
    administrative_stop: bool = False
    waiting: str = ""
    stdin_fd: int = -1
    stdout_fd: int = -1
    stderr_fd: int = -1
    stdin_pending: str = ""  # latin-1 text of bytes queued for stdin and not yet taken by the pipe
    stdout_logfile: str | None = None  # the paths in use (AUTO ones are made per run)
    stderr_logfile: str | None = None
    health: str = ""  # the health check's verdict (agent/health.py Health value), failures in a row, why
    health_failures: int = 0
    health_message: str = ""


@dataclass(frozen=True)
class SocketState:
    """A listening socket handed over open, so no connection is ever refused: an HTTP server's,
    or one holding the gRPC port (grpcport.py; an agent that does not know the kind closes it)."""

    kind: str  # "inet" or "unix" (HTTP), or "grpc"
    fd: int
    host: str | None = None
    port: int | None = None
    file: str | None = None
    file_identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket file we made


@dataclass(frozen=True)
class EventState:
    """A buffered or in-hand event of a listener pool, with the serials it was given."""

    name: str
    payload: str
    serial: int | None
    pool_serials: dict[str, int]


@dataclass(frozen=True)
class ListenerSave:
    """Where one listener of a pool is in the READY/RESULT protocol."""

    namespec: str
    state: str  # a ListenerState name
    unparsed: str = ""  # latin-1 text of what it wrote and was not parsed yet
    result_len: int | None = None
    result: str = ""  # latin-1 text of the part of a RESULT body read so far
    event: EventState | None = None  # the event it holds (sent, not answered)


@dataclass(frozen=True)
class PoolState:
    name: str
    serial: int  # the pool's last serial
    buffer: list[EventState] = field(default_factory=list)
    listeners: list[ListenerSave] = field(default_factory=list)


@dataclass(frozen=True)
class HandoffState:
    argv: list[str]  # the agent's own arguments, without the resume marker
    previous_command: list[str]  # how to run the agent that wrote this: the way back
    boot: str  # /proc/sys/kernel/random/boot_id: a file from another boot is worthless
    written_at: float
    started_at: float  # of the run of the daemon (getState/uptime carry on)
    event_serial: int
    journal_run_id: str = ""
    journal_sequence: int = 0
    sockets: list[SocketState] = field(default_factory=list)
    children: list[ChildState] = field(default_factory=list)
    pools: list[PoolState] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)  # shutdowns and restarts asked for during the handover
    fallback: bool = False  # written by a new agent that could not adopt: do not go back again
    version: int = STATE_VERSION

    def fds(self) -> list[int]:
        """Every descriptor the file refers to: they must survive the exec."""
        found = [s.fd for s in self.sockets]
        for child in self.children:
            found += [fd for fd in (child.stdin_fd, child.stdout_fd, child.stderr_fd) if fd >= 0]
        return found


def dumps(state: HandoffState) -> str:
    return json.dumps(dataclasses.asdict(state), separators=(",", ":"))


def loads(text: str) -> HandoffState:
    """The state in `text`, upgraded to this version. Raises StateError."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateError(f"the handoff file is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("version"), int):
        raise StateError("the handoff file has no version number")
    version = data["version"]
    if version > STATE_VERSION:
        raise StateError(f"the handoff file has format version {version}; this agent reads up to "
                         f"{STATE_VERSION}")
    while version < STATE_VERSION:
        if version not in _UPGRADES:
            raise StateError(f"the handoff file has format version {version}, which this agent cannot read")
        data = _UPGRADES[version](data)
        version = data["version"]
    try:
        sockets = [SocketState(**{**s, "file_identity": _pair(s.get("file_identity"))})
                   for s in data.pop("sockets")]
        children = [ChildState(**c) for c in data.pop("children")]
        pools = [_pool(p) for p in data.pop("pools", [])]
        return HandoffState(**data, sockets=sockets, children=children, pools=pools)
    except (TypeError, KeyError, AttributeError) as exc:
        raise StateError(f"the handoff file is malformed: {exc}") from None


def _event(value: dict[str, Any] | None) -> EventState | None:
    return None if value is None else EventState(**value)


def _pool(value: dict[str, Any]) -> PoolState:
    buffer = [EventState(**e) for e in value.pop("buffer")]
    listeners = [ListenerSave(**{**item, "event": _event(item.get("event"))}) for item in value.pop("listeners")]
    return PoolState(**value, buffer=buffer, listeners=listeners)


def _pair(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"file_identity must be a pair, not {value!r}")
    return int(value[0]), int(value[1])


def read(path: str) -> HandoffState:
    try:
        with open(path, encoding="utf-8") as f:
            return loads(f.read())
    except OSError as exc:
        raise StateError(f"cannot read the handoff file {path}: {exc.strerror}") from None
