"""Event listener pools: the [eventlistener:x] groups and the READY/RESULT protocol.

A pool buffers the events it subscribed to (at most `buffer_size`, dropping the oldest) and
hands each to one of its processes that is RUNNING and has said READY. The listener answers
on its stdout with ``RESULT <len>\\n<result>``; OK means done, anything else (FAIL) puts the
event back at the head of the buffer, as does the listener dying with an event in hand.
A listener that breaks the protocol is put in the UNKNOWN state and gets no more events
until it is restarted.

`ListenerProtocol` is the pure parser of a listener's stdout; `Listener` ties it to one
process; `ListenerPool` owns the buffer and the dispatch.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import importlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import GLOBAL_SERIAL, Event, Serial, envelope
from .mainlog import Level
from .states import ProcessState

if TYPE_CHECKING:
    from .childlog import ChildLog
    from .process import Process
    from .supervisor import ProcessGroup, Supervisor

READY_TOKEN = b"READY\n"
RESULT_PREFIX = b"RESULT "
DEFAULT_RESULT_HANDLER = "supervisor.dispatchers:default_handler"
# A listener's answer is held until it is complete, so both parts are bounded: a RESULT line
# is "RESULT " and a length (a longer one without its newline is a violation, not a buffer
# growing with every read), and a result is a short verdict such as OK or FAIL.
MAX_RESULT_LINE = 64
MAX_RESULT_BYTES = 1 << 20


class ListenerState(enum.IntEnum):
    """supervisord's listener states; the numbers are theirs."""

    READY = 10
    BUSY = 20
    ACKNOWLEDGED = 30
    UNKNOWN = 40


# The hot path (a round trip per event) reads these as plain globals.
_READY, _BUSY, _ACKNOWLEDGED, _UNKNOWN = (ListenerState.READY, ListenerState.BUSY,
                                          ListenerState.ACKNOWLEDGED, ListenerState.UNKNOWN)
_RUNNING = ProcessState.RUNNING


# -- the protocol, pure ------------------------------------------------------------------------

@dataclass(frozen=True)
class Ready:
    """The listener asked for an event."""


@dataclass(frozen=True)
class Result:
    """The listener finished the event in hand; `data` is what it answered (b"OK", b"FAIL")."""

    data: bytes


@dataclass(frozen=True)
class Violation:
    """The listener broke the protocol. `bad_result_line` is set when it did so while holding
    an event (the event must be put back)."""

    bad_result_line: bytes | None = None


Message = Ready | Result | Violation
READY_MESSAGE = Ready()


class ListenerProtocol:
    """Parses what one run of a listener writes on stdout.

    A fresh listener is ACKNOWLEDGED: it owes us a READY line. After READY it must stay
    silent until it is sent an event (`sent()` makes it BUSY); then it owes a RESULT line
    and exactly that many bytes, after which it is ACKNOWLEDGED again. Anything else is a
    violation and UNKNOWN is final for this run. `on_change(old, new)` hears every
    transition the listener's own output causes.
    """

    def __init__(self, on_change: Callable[[ListenerState, ListenerState], None] | None = None) -> None:
        self.state = _ACKNOWLEDGED
        self.on_change = on_change
        self._buffer = b""
        self._result_len: int | None = None
        self._result = b""

    def where(self) -> tuple[ListenerState, bytes, int | None, bytes]:
        """(state, unparsed bytes, RESULT length, result body so far): what a re-exec carries."""
        return self.state, self._buffer, self._result_len, self._result

    def resume(self, state: ListenerState, unparsed: bytes, result_len: int | None, result: bytes) -> None:
        """Carry on from `where()` of the same listener in the agent before a re-exec."""
        self.state, self._buffer, self._result_len, self._result = state, unparsed, result_len, result

    def sent(self) -> None:
        """An event was written to the listener's stdin."""
        self.state = _BUSY

    def acknowledge(self) -> None:
        """The result was handled (taken or rejected): BUSY -> ACKNOWLEDGED."""
        if self.state == _BUSY:
            self._change(_ACKNOWLEDGED)

    def fail(self) -> None:
        """The listener broke the protocol or its result could not be handled: nothing it
        says can be trusted any more."""
        self._buffer = b""
        if self.state != _UNKNOWN:
            self._change(_UNKNOWN)

    def feed(self, data: bytes) -> Iterator[Message]:
        """Take bytes the listener wrote and yield what they say, one message at a time.

        After a `Result` the caller says `acknowledge()` or `fail()` before asking for the
        next message (that decides how the rest is read); saying nothing acknowledges.
        """
        self._buffer += data
        while (message := self._next()) is not None:
            yield message
            if isinstance(message, Result):
                self.acknowledge()
            elif isinstance(message, Violation):
                self.fail()

    def _change(self, new: ListenerState) -> None:
        old, self.state = self.state, new
        if self.on_change is not None:
            self.on_change(old, new)

    def _violation(self, bad_result_line: bytes | None = None) -> Violation:
        """The state becomes UNKNOWN once the caller has seen the violation."""
        self._buffer = b""
        self._result_len = None
        self._result = b""
        return Violation(bad_result_line)

    def _next(self) -> Message | None:
        state = self.state
        if state == _UNKNOWN:
            self._buffer = b""
            return None
        if not self._buffer and not (state == _BUSY and self._result_len == 0):
            return None
        if state == _ACKNOWLEDGED:
            if len(self._buffer) < len(READY_TOKEN):
                return None
            if not self._buffer.startswith(READY_TOKEN):
                return self._violation()
            self._buffer = self._buffer[len(READY_TOKEN):]
            self._change(_READY)
            return READY_MESSAGE
        if state == _READY:
            return self._violation()  # spoke without being spoken to
        # BUSY: a RESULT line, then its body
        if self._result_len is None:
            line, newline, rest = self._buffer.partition(b"\n")
            if not newline:
                if len(line) > MAX_RESULT_LINE:
                    return self._violation(bad_result_line=line[:MAX_RESULT_LINE])
                return None
            length = line[len(RESULT_PREFIX):]
            if (not line.startswith(RESULT_PREFIX) or not length.isdigit() or len(line) > MAX_RESULT_LINE
                    or int(length) > MAX_RESULT_BYTES):
                return self._violation(bad_result_line=line[:MAX_RESULT_LINE])
            self._buffer = rest
            self._result_len = int(length)
        needed = self._result_len - len(self._result)
        self._result += self._buffer[:needed]
        self._buffer = self._buffer[needed:]
        if len(self._result) < self._result_len:
            return None
        result, self._result, self._result_len = self._result, b"", None
        return Result(result)


# -- result handlers ---------------------------------------------------------------------------

class Verdict(enum.Enum):
    PROCESSED = "processed"
    REJECTED = "rejected"
    ERROR = "error"


ResultHandler = Callable[[Event, bytes], Verdict]


def default_handler(event: Event, result: bytes) -> Verdict:
    """supervisord's default: OK is done, any other answer asks for the event again."""
    return Verdict.PROCESSED if result == b"OK" else Verdict.REJECTED


def load_result_handler(spec: str) -> ResultHandler:
    """The handler a `result_handler=module:callable` names.

    A custom handler is called as supervisord calls it, `handler(event, result)`, and
    rejects by raising an exception named RejectEvent (supervisor.dispatchers.RejectEvent);
    any other exception is an error. It receives a fleetvisor `Event`.
    """
    if spec == DEFAULT_RESULT_HANDLER:
        return default_handler
    module_name, _, attr = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        target = getattr(target, part)
    handler = target

    def call(event: Event, result: bytes) -> Verdict:
        try:
            handler(event, result)
        except Exception as exc:
            return Verdict.REJECTED if type(exc).__name__ == "RejectEvent" else Verdict.ERROR
        return Verdict.PROCESSED
    return call


# -- runtime -----------------------------------------------------------------------------------

class Listener:
    """The listener side of one process of a pool: its protocol state and the event it holds."""

    def __init__(self, pool: ListenerPool, process: Process) -> None:
        self.pool = pool
        self.process = process
        self.event: Event | None = None
        self.protocol = ListenerProtocol(self._changed)

    @property
    def state(self) -> ListenerState:
        return self.protocol.state

    @property
    def ready(self) -> bool:
        return self.protocol.state == _READY and self.process.state == _RUNNING

    def spawned(self) -> None:
        """A new run starts owing a READY."""
        self.protocol = ListenerProtocol(self._changed)
        self.event = None
        self._answered()

    def running(self) -> None:
        """The process entered RUNNING: it may be sent events now."""
        self.pool.schedule_dispatch()

    def exited(self) -> None:
        """The process is gone; an event it held is put back first in line."""
        self._answered()
        event, self.event = self.event, None
        if event is not None:
            self.pool.accept(event, head=True)

    def sent(self, event: Event) -> None:
        self.protocol.sent()
        self.event = event
        self.pool.core.events.awaiting[self] = self._collect

    def _answered(self) -> None:
        self.pool.core.events.awaiting.pop(self, None)

    def _collect(self) -> None:
        """Read the answer this listener may already have written (see EventBus.awaiting)."""
        if self.protocol.state == _BUSY:
            self.process.read_stdout()
        else:
            self._answered()

    def stdout_tap(self, log: ChildLog) -> ListenerStdout:
        return ListenerStdout(self, log)

    def output(self, data: bytes) -> None:
        said_ready = False
        for message in self.protocol.feed(data):
            said_ready = said_ready or isinstance(message, Ready)
            self._handle(message)
        # Ready for the next event: send it now, while the loop is here, rather than on a
        # later pass (a round trip per event is what bounds a listener's rate). Only once
        # the whole chunk is parsed, so bytes after READY are judged in the READY state.
        if said_ready and self.ready:
            self.pool.dispatch_now()

    def _handle(self, message: Message) -> None:
        if isinstance(message, Ready):
            self.event = None
            return
        self._answered()
        name = self.process.name
        log = self.process.core.log
        if isinstance(message, Result):
            event, self.event = self.event, None
            verdict = self.pool.handler(event, message.data) if event is not None else Verdict.PROCESSED
            if verdict is Verdict.PROCESSED:
                if log.is_enabled(Level.DEBG):
                    log.debug(f"{name}: event was processed")
                self.protocol.acknowledge()
            elif verdict == Verdict.REJECTED:
                log.warn(f"{name}: event was rejected")
                self.protocol.acknowledge()
            else:
                log.warn(f"{name}: event caused an error")
                self.protocol.fail()
            if verdict != Verdict.PROCESSED and event is not None:
                self.pool.accept(event, head=True)
        else:
            event, self.event = self.event, None
            if message.bad_result_line is not None:
                try:
                    shown = message.bad_result_line.decode("utf-8")
                except UnicodeDecodeError:
                    shown = f"Undecodable: {message.bad_result_line!r}"
                log.warn(f"{name}: bad result line: '{shown}'")
                if event is not None:
                    self.pool.accept(event, head=True)

    def _changed(self, old: ListenerState, new: ListenerState) -> None:
        name = self.process.name
        log = self.process.core.log
        if log.is_enabled(Level.DEBG):
            log.debug(f"{name}: {old.name} -> {new.name}")
        if new == ListenerState.UNKNOWN:
            log.warn(f"{name}: has entered the UNKNOWN state and will no longer receive events, "
                     "this usually indicates the process violated the eventlistener protocol")


class ListenerStdout:
    """A listener's stdout: parsed as the protocol, and still written to stdout_logfile (as
    supervisord does) with the debug line showing the raw bytes."""

    def __init__(self, listener: Listener, log: ChildLog) -> None:
        self.listener = listener
        self.log = log

    def feed(self, data: bytes) -> None:
        proc = self.listener.process
        mainlog = proc.core.log
        if mainlog.is_enabled(Level.DEBG):
            mainlog.debug(f"{proc.name!r} stdout output:\n{data!r}")
        self.log.write(data)
        self.listener.output(data)

    def close(self) -> None:
        pass


class ListenerPool:
    """The event side of an [eventlistener:x] group: its subscription, buffer and serials."""

    def __init__(self, group: ProcessGroup, core: Supervisor) -> None:
        config = group.config
        self.group = group
        self.core = core
        self.name = config.name
        self.buffer_size = config.buffer_size
        self.buffer: deque[Event] = deque()
        self.serial = Serial()
        try:
            self.handler = load_result_handler(config.result_handler)
        except (ImportError, AttributeError) as exc:
            core.log.critical(f"{config.result_handler} cannot be resolved within "
                              f"[eventlistener:{self.name}] ({exc}); using the default handler")
            self.handler = default_handler
        self.listeners = [Listener(self, proc) for proc in group.processes.values()]
        for listener in self.listeners:
            listener.process.listener = listener
        self._dispatch_handle: asyncio.Handle | None = None
        # Asked once: the events path runs per event (the level is fixed for the log's life).
        self._debug = core.log.is_enabled(Level.DEBG)
        # The head event's envelope, made while every listener was busy (see _prepare_head).
        self._prepared: tuple[Event, bytes] | None = None
        self._unsubscribe = core.events.subscribe(config.events, self.accept)

    def close(self) -> None:
        """The group is being removed: no more events."""
        self._unsubscribe()
        self._prepared = None
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
            self._dispatch_handle = None

    def accept(self, event: Event, head: bool = False) -> None:
        """Buffer an event (at the head when it comes back), dropping the oldest when full."""
        if event.serial is None:
            event.serial = GLOBAL_SERIAL.next()
        log = self.core.log
        buffer = self.buffer
        if self.name not in event.pool_serials:
            event.pool_serials[self.name] = self.serial.next()
        elif log.is_enabled(Level.DEBG):
            log.debug(f"rebuffering event {event.serial} for pool {self.name} "
                      f"(buf size={len(buffer)}, max={self.buffer_size})")
        if len(buffer) >= self.buffer_size:
            dropped = buffer.popleft()
            if self._prepared is not None and self._prepared[0] is dropped:
                self._prepared = None
            log.error(f"pool {self.name} event buffer overflowed, discarding event {dropped.serial}")
        if head:
            buffer.appendleft(event)
        else:
            buffer.append(event)
        # Only a listener becoming ready (READY, or its process RUNNING) can make a dispatch
        # send something, and that dispatches itself: no ready listener, no dispatch.
        if self._dispatch_handle is None:
            for listener in self.listeners:
                if listener.ready:
                    self.schedule_dispatch()
                    break
            else:  # nobody ready: a new head gets its envelope made ahead (see _prepare_head)
                if self._debug:
                    self._kept_back()
                if len(buffer) == 1:
                    self._prepare_head()

    def schedule_dispatch(self) -> None:
        """Dispatch once the current burst of events is buffered (as supervisord does at the
        end of a loop pass), so a burst larger than the buffer overflows it the same way."""
        if self._dispatch_handle is None and self.buffer:
            self._dispatch_handle = asyncio.get_running_loop().call_soon(self.dispatch)

    def dispatch_now(self) -> None:
        """A listener just became ready: dispatch at once (a pending dispatch is done now)."""
        if self._dispatch_handle is not None:
            self._dispatch_handle.cancel()
        self.dispatch()

    def dispatch(self) -> None:
        """Send buffered events, oldest first, one to each listener that is ready."""
        self._dispatch_handle = None
        while self.buffer:
            listener = self._send(self.buffer[0])
            if listener is None:
                if self._debug:
                    self._kept_back()
                self._prepare_head()
                return
            self.buffer.popleft()

    def _kept_back(self) -> None:
        """The head event found no ready listener. supervisord takes the head out, fails to
        send it and puts it back, and says so at debug level; so do we."""
        self.core.log.debug(f"rebuffering event {self.buffer[0].serial} for pool {self.name} "
                            f"(buf size={len(self.buffer) - 1}, max={self.buffer_size})")

    def _prepare_head(self) -> None:
        """No listener is ready: if one is busy (its answer and READY will come), make the
        head event's envelope now, so that the READY only has to write it. The time a
        listener waits between READY and its event bounds the pool's rate; the work done
        here overlaps with the listener handling its current event."""
        head = self.buffer[0]
        if self._prepared is not None and self._prepared[0] is head:
            return
        if any(listener.protocol.state == _BUSY for listener in self.listeners):
            self._prepared = (head, self._envelope(head))

    def _envelope(self, event: Event) -> bytes:
        return envelope(event, server=self.core.config.supervisord.identifier, pool=self.name,
                        pool_serial=event.pool_serials[self.name])

    def _send(self, event: Event) -> Listener | None:
        data = None  # made once a listener is ready to take it
        log = self.core.log
        for listener in self.listeners:
            if not listener.ready:
                continue
            if data is None:
                prepared, self._prepared = self._prepared, None
                data = prepared[1] if prepared is not None and prepared[0] is event else self._envelope(event)
            try:
                listener.process.write_stdin(data)
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                log.debug(f"epipe occurred while sending event {event.serial} to listener "
                          f"{listener.process.name}, listener state unchanged")
                continue
            listener.sent(event)
            self.core.tally.events_delivered += 1
            if log.is_enabled(Level.DEBG):
                log.debug(f"event {event.serial} sent to listener {listener.process.name}")
            return listener
        return None
