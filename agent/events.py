"""supervisord's events: their names and family tree, their payloads, the bus and the clock.

An event is a name and an already rendered payload. Rendering happens when the event is
made, not when it is sent, because a listener may get it much later (after a buffer wait or
a rebuffer) and must still see the pid, tries and data of the moment it happened.

Subscription follows the family tree: a pool that asks for PROCESS_STATE gets every
PROCESS_STATE_* event, one that asks for EVENT gets everything. The names, the tree and the
payload texts are wire facts that stock listeners (childutils, superlance) parse.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from .childlog import debug_line, strip_ansi
from .mainlog import Level

if TYPE_CHECKING:
    from .childlog import ChildLog
    from .process import Process

# Every event type and its parent. Types with children are abstract: never published
# themselves, only subscribed to.
PARENTS: dict[str, str | None] = {
    "EVENT": None,
    "PROCESS_STATE": "EVENT",
    "PROCESS_STATE_STOPPED": "PROCESS_STATE",
    "PROCESS_STATE_EXITED": "PROCESS_STATE",
    "PROCESS_STATE_STARTING": "PROCESS_STATE",
    "PROCESS_STATE_STOPPING": "PROCESS_STATE",
    "PROCESS_STATE_BACKOFF": "PROCESS_STATE",
    "PROCESS_STATE_FATAL": "PROCESS_STATE",
    "PROCESS_STATE_RUNNING": "PROCESS_STATE",
    "PROCESS_STATE_UNKNOWN": "PROCESS_STATE",
    "PROCESS_COMMUNICATION": "EVENT",
    "PROCESS_COMMUNICATION_STDOUT": "PROCESS_COMMUNICATION",
    "PROCESS_COMMUNICATION_STDERR": "PROCESS_COMMUNICATION",
    "PROCESS_LOG": "EVENT",
    "PROCESS_LOG_STDOUT": "PROCESS_LOG",
    "PROCESS_LOG_STDERR": "PROCESS_LOG",
    "REMOTE_COMMUNICATION": "EVENT",
    "SUPERVISOR_STATE_CHANGE": "EVENT",
    "SUPERVISOR_STATE_CHANGE_RUNNING": "SUPERVISOR_STATE_CHANGE",
    "SUPERVISOR_STATE_CHANGE_STOPPING": "SUPERVISOR_STATE_CHANGE",
    "TICK": "EVENT",
    "TICK_5": "TICK",
    "TICK_60": "TICK",
    "TICK_3600": "TICK",
    "PROCESS_GROUP": "EVENT",
    "PROCESS_GROUP_ADDED": "PROCESS_GROUP",
    "PROCESS_GROUP_REMOVED": "PROCESS_GROUP",
    # fleetvisor's own: a process's health check changed its verdict (stock supervisord has none)
    "FLEETVISOR_PROCESS_HEALTH": "EVENT",
    "FLEETVISOR_PROCESS_HEALTH_HEALTHY": "FLEETVISOR_PROCESS_HEALTH",
    "FLEETVISOR_PROCESS_HEALTH_UNHEALTHY": "FLEETVISOR_PROCESS_HEALTH",
    "FLEETVISOR_PROCESS_HEALTH_UNKNOWN": "FLEETVISOR_PROCESS_HEALTH",
}

ABSTRACT = frozenset(p for p in PARENTS.values() if p is not None)
CONCRETE = tuple(name for name in PARENTS if name not in ABSTRACT)

# Capture mode markers a child writes around a message meant for listeners.
BEGIN_TOKEN = b"<!--XSUPERVISOR:BEGIN-->"
END_TOKEN = b"<!--XSUPERVISOR:END-->"

TICK_PERIODS: tuple[tuple[int, str], ...] = ((5, "TICK_5"), (60, "TICK_60"), (3600, "TICK_3600"))


def lineage(name: str) -> tuple[str, ...]:
    """The type and all its ancestors, nearest first: TICK_5, TICK, EVENT."""
    chain: list[str] = []
    current: str | None = name
    while current is not None:
        chain.append(current)
        current = PARENTS[current]
    return tuple(chain)


def matches(name: str, subscribed: Iterable[str]) -> bool:
    """Does a subscription to `subscribed` types receive events of type `name`?"""
    return not set(lineage(name)).isdisjoint(subscribed)


class Event:
    """One occurrence. Serials are given by the first pool that buffers it (one global
    serial per event, one serial per pool), so events nobody listens to use none.

    Child output events keep their fields of the moment (name, group, pid) rendered as a
    header and the raw bytes as read: the text is only made when the event is sent or
    its `payload` is asked for. Under a flood most of them are dropped from a full buffer
    unsent, and a sent one goes out as the bytes it came in as (no decode and encode).
    """

    __slots__ = ("name", "_payload", "_data", "serial", "pool_serials")

    def __init__(self, name: str, payload: str, serial: int | None = None,
                 pool_serials: dict[str, int] | None = None) -> None:
        self.name = name
        self._payload = payload  # the whole text, or only the header when _data is set
        self._data: bytes | None = None
        self.serial = serial
        self.pool_serials = {} if pool_serials is None else pool_serials

    @classmethod
    def output(cls, name: str, head: str, data: bytes) -> Event:
        """An event whose payload is `head` followed by child output `data` as text."""
        event = cls(name, head)
        event._data = data
        return event

    @property
    def payload(self) -> str:
        if self._data is None:
            return self._payload
        return self._payload + output_text(self._data)

    def body(self) -> tuple[bytes, bytes, int]:
        """The payload as UTF-8 in two pieces, and its length in characters."""
        text, data = self._payload, self._data
        if data is None:
            return text.encode("utf-8"), b"", len(text)
        if data.isascii():  # ASCII bytes are their own text, one character a byte
            chars = len(data)
        else:
            try:
                chars = len(data.decode("utf-8"))
            except UnicodeDecodeError:
                rendered = output_text(data)
                data, chars = rendered.encode("utf-8"), len(rendered)
        return text.encode("utf-8"), data, len(text) + chars

    def __repr__(self) -> str:
        return f"Event({self.name!r}, serial={self.serial!r}, pool_serials={self.pool_serials!r})"


class Serial:
    """A counter that starts at 0 and wraps back to 0 after sys.maxsize."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = -1

    def next(self) -> int:
        self.value = 0 if self.value >= sys.maxsize else self.value + 1
        return self.value


# supervisord keeps one global serial for the life of the daemon process, across restarts.
GLOBAL_SERIAL = Serial()


def envelope(event: Event, *, server: str, pool: str, pool_serial: int) -> bytes:
    """The header line and payload a listener reads from its stdin. `len` counts the
    payload's characters, not its bytes: listeners read their stdin as text."""
    head, data, length = event.body()
    header = (f"ver:3.0 server:{server} serial:{event.serial} pool:{pool} "
              f"poolserial:{pool_serial} eventname:{event.name} len:{length}\n")
    return b"".join((header.encode("utf-8"), head, data))


# -- payloads ----------------------------------------------------------------------------------

def output_text(data: bytes) -> str:
    """Child output as payload text; bytes that are not UTF-8 are shown as their repr."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return f"Undecodable: {data!r}"


def process_state(name: str, processname: str, groupname: str, from_state: str,
                  extras: Iterable[tuple[str, object]] = ()) -> Event:
    fields = [("processname", processname), ("groupname", groupname), ("from_state", from_state),
              *extras]
    return Event(name, " ".join(f"{k}:{v}" for k, v in fields))


def process_state_extras(new_state: str, pid: int, tries: int, expected: bool | None
                         ) -> tuple[tuple[str, object], ...]:
    """The fields after from_state, which depend on the state entered."""
    if new_state in ("STARTING", "BACKOFF"):
        return (("tries", tries),)
    if new_state == "EXITED":
        return (("expected", int(bool(expected))), ("pid", pid))
    if new_state in ("RUNNING", "STOPPING", "STOPPED"):
        return (("pid", pid),)
    return ()  # FATAL, UNKNOWN


def process_log(channel: str, processname: str, groupname: str, pid: int, data: bytes) -> Event:
    return Event.output(f"PROCESS_LOG_{channel.upper()}",
                        process_log_head(channel, processname, groupname, pid), data)


def process_log_head(channel: str, processname: str, groupname: str, pid: int) -> str:
    return f"processname:{processname} groupname:{groupname} pid:{pid} channel:{channel}\n"


def process_communication(channel: str, processname: str, groupname: str, pid: int,
                          data: bytes) -> Event:
    return Event.output(f"PROCESS_COMMUNICATION_{channel.upper()}",
                        f"processname:{processname} groupname:{groupname} pid:{pid}\n", data)


def remote_communication(type_: str, data: str) -> Event:
    return Event("REMOTE_COMMUNICATION", f"type:{type_}\n{data}")


def supervisor_state(running: bool) -> Event:
    return Event("SUPERVISOR_STATE_CHANGE_RUNNING" if running else "SUPERVISOR_STATE_CHANGE_STOPPING", "")


def process_health(name: str, processname: str, groupname: str, from_health: str, message: str) -> Event:
    """A health change: header tokens as PROCESS_STATE's, then the last failure's message on a
    line of its own (a URL has colons, which the `key:value` tokens cannot hold)."""
    return Event(name, f"processname:{processname} groupname:{groupname} from_health:{from_health}\n{message}")


def process_group(added: bool, groupname: str) -> Event:
    return Event("PROCESS_GROUP_ADDED" if added else "PROCESS_GROUP_REMOVED", f"groupname:{groupname}\n")


def tick(name: str, when: int) -> Event:
    return Event(name, f"when:{when}")


# -- the bus -----------------------------------------------------------------------------------

Subscriber = Callable[[Event], None]


class EventBus:
    """Routes each event to the subscribers of its type or of an ancestor, in the order they
    subscribed. `wants` lets producers skip building events nobody would receive.

    `awaiting` holds, for each event listener that has been sent an event and owes its
    answer, a function that reads what it has written so far. A producer of output events
    calls them before it reads more output (`collect_answers`): an answer already in the
    pipe frees the listener for the next event now, rather than after this read and the
    loop's next pass, and the events just read find room in the buffer. (supervisord reads
    all ready pipes of a pass in no set order; this is one of those orders.)
    """

    def __init__(self) -> None:
        # Tuples, replaced on (un)subscribe: publish iterates them without a copy even when a
        # callback subscribes or unsubscribes.
        self._routes: dict[str, tuple[Subscriber, ...]] = {}
        self.awaiting: dict[object, Callable[[], None]] = {}

    def subscribe(self, types: Iterable[str], callback: Subscriber) -> Callable[[], None]:
        wanted = set(types)
        unknown = wanted - PARENTS.keys()
        if unknown:
            raise ValueError(f"unknown event type(s): {', '.join(sorted(unknown))}")
        names = [n for n in CONCRETE if not wanted.isdisjoint(lineage(n))]
        for name in names:
            self._routes[name] = (*self._routes.get(name, ()), callback)

        def unsubscribe() -> None:
            for name in names:
                route = list(self._routes[name])
                route.remove(callback)
                if route:
                    self._routes[name] = tuple(route)
                else:
                    del self._routes[name]
        return unsubscribe

    def wants(self, name: str) -> bool:
        return name in self._routes

    def publish(self, event: Event) -> None:
        for callback in self._routes.get(event.name, ()):
            callback(event)

    def collect_answers(self) -> None:
        for collect in list(self.awaiting.values()):
            collect()


# -- capture mode ------------------------------------------------------------------------------

def _partial_token_at_end(data: bytes | bytearray, token: bytes) -> int:
    """Length of the longest proper prefix of `token` that `data` ends with."""
    for n in range(min(len(token) - 1, len(data)), 0, -1):
        if data.endswith(token[:n]):
            return n
    return 0


class CaptureScanner:
    """Splits a channel's byte stream into normal output and captured messages.

    Text between BEGIN and END tokens is a message for listeners; only its last
    `maxbytes` bytes are kept. The tokens themselves go nowhere. A token split across two
    reads is held back until the next read decides it.
    """

    def __init__(self, maxbytes: int) -> None:
        self.maxbytes = maxbytes
        self.capturing = False
        self._held = b""
        self._captured = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """('output', bytes) pieces for the log, ('captured', bytes) pieces that went into
        the capture buffer, and ('message', bytes) for each complete message."""
        out: list[tuple[str, bytes]] = []
        buf = self._held + data
        self._held = b""
        while buf:
            token = END_TOKEN if self.capturing else BEGIN_TOKEN
            before, found, after = buf.partition(token)
            if not found:
                keep = _partial_token_at_end(buf, token)
                if keep:
                    self._held, buf = buf[-keep:], buf[:-keep]
                self._take(buf, out)
                break
            self._take(before, out)
            self.capturing = not self.capturing
            if not self.capturing:
                out.append(("message", bytes(self._captured)))
                self._captured.clear()
            buf = after
        return out

    def flush(self) -> list[tuple[str, bytes]]:
        """End of stream: bytes held back for a possible token are ordinary data after all."""
        out: list[tuple[str, bytes]] = []
        held, self._held = self._held, b""
        self._take(held, out)
        return out

    def _take(self, data: bytes, out: list[tuple[str, bytes]]) -> None:
        if not data:
            return
        if self.capturing:
            self._captured += data
            if len(self._captured) > self.maxbytes:
                del self._captured[:len(self._captured) - self.maxbytes]
            out.append(("captured", data))
        else:
            out.append(("output", data))


class OutputTap(Protocol):
    """Takes a channel's bytes instead of the plain log write."""

    def feed(self, data: bytes) -> None: ...

    def close(self) -> None:
        """The pipe reached its end."""


class OutputEvents:
    """The slow path of a child's stdout or stderr, taken only when something besides the log
    wants its bytes: capture mode (`*_capture_maxbytes`) or log events (`*_events_enabled`).

    Every piece of output, captured or not, gives a debug line and a PROCESS_LOG event; a
    captured message also gives a PROCESS_COMMUNICATION event. Captured text and the tokens
    never reach the log file.
    """

    def __init__(self, process: Process, channel: str, log: ChildLog, *, capture_maxbytes: int,
                 events_enabled: bool) -> None:
        self.process = process
        self.channel = channel
        self.log = log
        self.scanner = CaptureScanner(capture_maxbytes) if capture_maxbytes else None
        self.log_event = f"PROCESS_LOG_{channel.upper()}" if events_enabled else None
        self.strip_ansi = process.core.config.supervisord.strip_ansi
        self._head: tuple[int, str] = (-1, "")  # the PROCESS_LOG header for this pid

    def feed(self, data: bytes) -> None:
        if self.scanner is None:
            self._record(data, to_log=True)
        else:
            self._route(self.scanner.feed(data))

    def close(self) -> None:
        if self.scanner is not None:
            self._route(self.scanner.flush())

    def _route(self, pieces: list[tuple[str, bytes]]) -> None:
        for kind, piece in pieces:
            if kind == "message":
                self._message(piece)
            else:
                self._record(piece, to_log=kind == "output")

    def _record(self, data: bytes, *, to_log: bool) -> None:
        if self.strip_ansi:
            data = strip_ansi(data)
        if not data:
            return
        proc = self.process
        core = proc.core
        if to_log:
            self.log.write(data)
        mainlog = core.log
        if mainlog.is_enabled(Level.DEBG):
            mainlog.debug(debug_line(proc.name, self.channel, data))
        name = self.log_event
        if name is not None and core.events.wants(name):
            pid = proc.pid
            if self._head[0] != pid:  # made once per run, not per chunk
                self._head = (pid, process_log_head(self.channel, proc.name, proc.group.name, pid))
            core.events.publish(Event.output(name, self._head[1], data))

    def _message(self, data: bytes) -> None:
        proc = self.process
        if self.strip_ansi:
            data = strip_ansi(data)
        proc.core.events.publish(process_communication(self.channel, proc.name, proc.group.name,
                                                       proc.pid, data))
        proc.core.log.debug(f"{proc.name!r} {self.channel} emitted a comm event")


# -- ticks -------------------------------------------------------------------------------------

def timeslice(period: int, when: float) -> int:
    """The start of the `period`-second slice of the epoch that `when` falls in."""
    return int(when - (when % period))


class Ticker:
    """TICK_5/60/3600 when the wall clock enters a new 5 s/60 s/3600 s slice of the epoch.

    The slices the daemon starts in are the baseline, so the first TICK_5 comes at the next
    multiple of 5 s. One loop timer is armed for the next 5 s boundary (every longer period's
    boundary is also one); nothing polls.
    """

    SLACK = 0.001  # loop timers may fire a hair early

    def __init__(self, publish: Callable[[Event], None], clock: Callable[[], float] = time.time) -> None:
        self.publish = publish
        self.clock = clock
        self._last: dict[int, int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        now = self.clock()
        self._last = {period: timeslice(period, now) for period, _ in TICK_PERIODS}
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self, now: float) -> list[Event]:
        """The tick events due at `now` (and the new baseline); in period order."""
        due: list[Event] = []
        for period, name in TICK_PERIODS:
            this = timeslice(period, now)
            if this != self._last[period]:
                self._last[period] = this
                due.append(tick(name, this))
        return due

    def _arm(self) -> None:
        # At most one period ahead: a wall clock set back is noticed within 5 s, as
        # supervisord notices it on its next loop pass.
        delay = min(5.0, max(0.0, self._last[5] + 5 - self.clock()))
        self._timer = asyncio.get_running_loop().call_later(delay + self.SLACK, self._fire)

    def _fire(self) -> None:
        for event in self.check(self.clock()):
            self.publish(event)
        self._arm()
