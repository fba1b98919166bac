"""The READY/RESULT parser and the pool's buffer, serials and dispatch, without processes."""

from __future__ import annotations

import asyncio
import errno
from types import SimpleNamespace

import pytest

from fleetvisor.agent.tally import AgentTally
from fleetvisor.agent import events as ev
from fleetvisor.agent.listener import (
    MAX_RESULT_BYTES,
    MAX_RESULT_LINE,
    Listener,
    ListenerPool,
    ListenerProtocol,
    ListenerState,
    Ready,
    Result,
    Verdict,
    Violation,
    default_handler,
    load_result_handler,
)
from fleetvisor.agent.states import ProcessState

S = ListenerState


def feed_all(protocol: ListenerProtocol, data: bytes) -> list:
    return list(protocol.feed(data))


# -- the protocol ------------------------------------------------------------------------------

def test_ready_result_ready():
    changes = []
    p = ListenerProtocol(lambda old, new: changes.append((old, new)))
    assert feed_all(p, b"READY\n") == [Ready()]
    p.sent()
    assert feed_all(p, b"RESULT 2\nOKREADY\n") == [Result(b"OK"), Ready()]
    assert p.state == S.READY
    assert changes == [(S.ACKNOWLEDGED, S.READY), (S.BUSY, S.ACKNOWLEDGED), (S.ACKNOWLEDGED, S.READY)]


CONVERSATION = b"READY\n", b"RESULT 4\nFAILREADY\n", b"RESULT 11\nline1\nline2READY\n"


def run_conversation(chunks: list[bytes]) -> list:
    """Feed chunks; mark BUSY after every Ready as a pool would when it sends an event."""
    p = ListenerProtocol()
    out = []
    for chunk in chunks:
        for message in p.feed(chunk):
            out.append(message)
            if isinstance(message, Ready) and len(out) < 3 + 2:
                p.sent()
    return out


def test_conversation_whole():
    assert run_conversation(list(CONVERSATION)) == [
        Ready(), Result(b"FAIL"), Ready(), Result(b"line1\nline2"), Ready()]


def test_conversation_byte_by_byte():
    stream = b"".join(CONVERSATION)
    assert run_conversation([stream[i:i + 1] for i in range(len(stream))]) == run_conversation([stream])


@pytest.mark.parametrize("cut", range(1, len(b"".join(CONVERSATION))))
def test_conversation_any_cut(cut):
    stream = b"".join(CONVERSATION)
    assert run_conversation([stream[:cut], stream[cut:]]) == run_conversation([stream])


def test_garbage_instead_of_ready_is_unknown_and_final():
    p = ListenerProtocol()
    assert feed_all(p, b"HELLO\n") == [Violation()]
    assert p.state == S.UNKNOWN
    assert feed_all(p, b"READY\n") == []
    assert p.state == S.UNKNOWN


def test_short_output_waits_for_a_whole_ready():
    p = ListenerProtocol()
    assert feed_all(p, b"REA") == []
    assert p.state == S.ACKNOWLEDGED
    assert feed_all(p, b"DY\n") == [Ready()]


def test_speaking_when_ready_is_a_violation():
    p = ListenerProtocol()
    assert feed_all(p, b"READY\nREADY\n") == [Ready(), Violation()]
    assert p.state == S.UNKNOWN


@pytest.mark.parametrize("line", [b"RESULT x", b"RESULTS 2", b"OK", b"RESULT -1", b"RESULT "])
def test_bad_result_line(line):
    p = ListenerProtocol()
    feed_all(p, b"READY\n")
    p.sent()
    assert feed_all(p, line + b"\nOK") == [Violation(bad_result_line=line)]
    assert p.state == S.UNKNOWN


def test_a_result_line_without_end_is_cut_off_at_its_bound():
    p = ListenerProtocol()
    feed_all(p, b"READY\n")
    p.sent()
    assert feed_all(p, b"RESULT 2") == []  # may still end
    assert feed_all(p, b"0" * MAX_RESULT_LINE) == [Violation(bad_result_line=(b"RESULT 2" + b"0" * 56))]
    assert p.state == S.UNKNOWN
    assert feed_all(p, b"0" * 100000) == [] and p._buffer == b""


def test_a_result_longer_than_its_bound_is_a_violation():
    p = ListenerProtocol()
    feed_all(p, b"READY\n")
    p.sent()
    line = b"RESULT %d" % (MAX_RESULT_BYTES + 1)
    assert feed_all(p, line + b"\nOK") == [Violation(bad_result_line=line)]
    p = ListenerProtocol()
    feed_all(p, b"READY\n")
    p.sent()
    assert feed_all(p, b"RESULT %d\n" % MAX_RESULT_BYTES + b"y" * MAX_RESULT_BYTES) == [
        Result(b"y" * MAX_RESULT_BYTES)]


def test_result_of_zero_length():
    p = ListenerProtocol()
    feed_all(p, b"READY\n")
    p.sent()
    assert feed_all(p, b"RESULT 0\n") == [Result(b"")]
    assert p.state == S.ACKNOWLEDGED


def test_failing_a_result_stops_reading():
    p = ListenerProtocol()
    feed_all(p, b"READY\n")
    p.sent()
    seen = []
    for message in p.feed(b"RESULT 2\nOKREADY\n"):
        seen.append(message)
        p.fail()
    assert seen == [Result(b"OK")]
    assert p.state == S.UNKNOWN


def test_default_handler():
    event = ev.Event("TICK_5", "when:0")
    assert default_handler(event, b"OK") == Verdict.PROCESSED
    assert default_handler(event, b"FAIL") == Verdict.REJECTED
    assert load_result_handler("supervisor.dispatchers:default_handler") is default_handler


def test_custom_handler_rejects_with_reject_event():
    handler = load_result_handler("supervisor.dispatchers:default_handler".replace(
        "default_handler", "stripEscapes"))  # any importable callable taking two args fails
    assert handler(ev.Event("TICK_5", ""), b"OK") == Verdict.ERROR


# -- the pool ----------------------------------------------------------------------------------

class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def is_enabled(self, level) -> bool:
        return True

    def __getattr__(self, level):
        return lambda msg: self.lines.append((level, msg))


class FakeProcess:
    def __init__(self, name: str, core) -> None:
        self.name = name
        self.core = core
        self.state = ProcessState.RUNNING
        self.listener: Listener | None = None
        self.stdin: list[bytes] = []
        self.broken = False

    def write_stdin(self, data: bytes) -> None:
        if self.broken:
            raise OSError(errno.EPIPE, "broken")
        self.stdin.append(data)


def make_pool(names=("l0",), buffer_size=3, events=("EVENT",)):
    core = SimpleNamespace(events=ev.EventBus(), log=Log(), tally=AgentTally(),
                           config=SimpleNamespace(supervisord=SimpleNamespace(identifier="supervisor")))
    procs = {n: FakeProcess(n, core) for n in names}
    config = SimpleNamespace(name="pool", buffer_size=buffer_size, events=events,
                             result_handler="supervisor.dispatchers:default_handler")
    group = SimpleNamespace(config=config, processes=procs)
    return ListenerPool(group, core), core, procs


def ready(proc: FakeProcess) -> None:
    proc.listener.output(b"READY\n")


def answer(proc: FakeProcess, result: bytes) -> None:
    proc.listener.output(b"RESULT %d\n%s" % (len(result), result))


def headers(data: bytes) -> dict[str, str]:
    return dict(item.split(":", 1) for item in data.decode().split("\n", 1)[0].split())


def run(coro_fn):
    async def main():
        return await coro_fn()
    return asyncio.run(main())


def test_overflow_drops_the_oldest_and_says_so():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=3)
        for i in range(5):
            core.events.publish(ev.tick("TICK_5", i))
        serials = [e.serial for e in pool.buffer]  # the global serial is process-wide
        assert serials == [serials[0], serials[0] + 1, serials[0] + 2]
        assert [e.pool_serials["pool"] for e in pool.buffer] == [2, 3, 4]
        errors = [m for lvl, m in core.log.lines if lvl == "error"]
        return errors, pool
    errors, pool = run(scenario)
    assert errors[0].startswith("pool pool event buffer overflowed, discarding event ")
    first = int(errors[0].rsplit(" ", 1)[1])
    assert errors == [f"pool pool event buffer overflowed, discarding event {first + i}" for i in range(2)]


def test_dispatch_one_event_per_ready_listener_and_rebuffer_on_fail():
    async def scenario():
        pool, core, procs = make_pool(names=("l0", "l1"), buffer_size=10)
        for i in range(3):
            core.events.publish(ev.tick("TICK_5", i))
        await asyncio.sleep(0)
        assert procs["l0"].stdin == [] and len(pool.buffer) == 3  # nobody READY yet
        ready(procs["l0"])
        ready(procs["l1"])
        await asyncio.sleep(0)
        sent = [headers(procs[n].stdin[-1]) for n in ("l0", "l1")]
        assert [h["poolserial"] for h in sent] == ["0", "1"]
        assert len(pool.buffer) == 1
        answer(procs["l0"], b"FAIL")  # back at the head of the buffer, before poolserial 2
        assert [e.pool_serials["pool"] for e in pool.buffer] == [0, 2]
        assert ("warn", "l0: event was rejected") in core.log.lines
        ready(procs["l0"])
        await asyncio.sleep(0)
        again = headers(procs["l0"].stdin[-1])
        assert again["poolserial"] == "0" and again["serial"] == sent[0]["serial"]
    run(scenario)


def test_an_event_no_listener_takes_is_rebuffered_with_supervisords_debug_line():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=10)
        ready(procs["l0"])
        core.events.publish(ev.tick("TICK_5", 1))
        core.events.publish(ev.tick("TICK_5", 2))
        await asyncio.sleep(0)  # the first goes out; the listener is busy for the second
        second = pool.buffer[0].serial
        core.events.publish(ev.tick("TICK_5", 3))  # arrives while nobody is ready
        answer(procs["l0"], b"OK")
        ready(procs["l0"])  # takes the second; the third waits
        return second, [m for lvl, m in core.log.lines if lvl == "debug" and m.startswith("rebuffering")]
    second, lines = run(scenario)
    assert lines == [f"rebuffering event {second} for pool pool (buf size=0, max=10)",
                     f"rebuffering event {second} for pool pool (buf size=1, max=10)",
                     f"rebuffering event {second + 1} for pool pool (buf size=0, max=10)"]


def test_listener_death_puts_its_event_back():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=10)
        ready(procs["l0"])
        core.events.publish(ev.tick("TICK_5", 5))
        await asyncio.sleep(0)
        assert pool.listeners[0].state == S.BUSY and not pool.buffer
        pool.listeners[0].exited()
        assert [e.payload for e in pool.buffer] == ["when:5"]
        pool.listeners[0].spawned()
        assert pool.listeners[0].state == S.ACKNOWLEDGED
    run(scenario)


def test_only_running_listeners_get_events_and_epipe_skips():
    async def scenario():
        pool, core, procs = make_pool(names=("l0", "l1"), buffer_size=10)
        procs["l0"].state = ProcessState.STARTING
        procs["l1"].broken = True
        ready(procs["l0"])
        ready(procs["l1"])
        core.events.publish(ev.tick("TICK_5", 5))
        await asyncio.sleep(0)
        assert len(pool.buffer) == 1
        assert any("epipe occurred while sending event" in m for _, m in core.log.lines)
        procs["l0"].state = ProcessState.RUNNING
        pool.listeners[0].running()
        await asyncio.sleep(0)
        assert not pool.buffer and headers(procs["l0"].stdin[0])["eventname"] == "TICK_5"
    run(scenario)


def test_bad_result_line_is_unknown_and_event_goes_back():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=10)
        ready(procs["l0"])
        core.events.publish(ev.tick("TICK_5", 5))
        await asyncio.sleep(0)
        procs["l0"].listener.output(b"RESULT two\n")
        assert pool.listeners[0].state == S.UNKNOWN
        assert len(pool.buffer) == 1
        warns = [m for lvl, m in core.log.lines if lvl == "warn"]
        assert warns == ["l0: bad result line: 'RESULT two'",
                         "l0: has entered the UNKNOWN state and will no longer receive events, this usually "
                         "indicates the process violated the eventlistener protocol"]
    run(scenario)


def test_serials_global_once_per_event_and_per_pool():
    async def scenario():
        bus = ev.EventBus()
        pools = []
        for name, events in (("a", ("TICK_5",)), ("b", ("TICK",))):
            pool, core, _ = make_pool(events=events)
            pool.name = name
            core.events = bus
            pool._unsubscribe()
            pool._unsubscribe = bus.subscribe(events, pool.accept)
            pools.append(pool)
        bus.publish(ev.tick("TICK_60", 0))  # only b
        bus.publish(ev.tick("TICK_5", 0))   # both
        bus.publish(ev.Event("PROCESS_LOG_STDOUT", ""))  # nobody: no serial used
        a, b = pools
        assert [e.pool_serials for e in b.buffer] == [{"b": 0}, {"a": 0, "b": 1}]
        assert b.buffer[1].serial == b.buffer[0].serial + 1
        assert a.buffer[0] is b.buffer[1]
    run(scenario)
