"""Event names, family tree, payloads and envelopes, judged against stock supervisor 4.3.0's
own event classes where it has them."""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace

import pytest
from supervisor import events as stock
from supervisor.process import EventListenerPool
from supervisor.states import ProcessStates

from fleetvisor.agent import events as ev
from fleetvisor.agent.config.datatypes import EVENT_TYPES


def fake_process(name="web", group="webs", pid=4242, backoff=2):
    """Just enough of a stock Subprocess for stock event payloads."""
    return SimpleNamespace(config=SimpleNamespace(name=name), group=SimpleNamespace(config=SimpleNamespace(name=group)),
                           pid=pid, backoff=backoff)


# -- names and family --------------------------------------------------------------------------

OURS = {name for name in ev.PARENTS if name.startswith("FLEETVISOR_")}


def test_every_stock_event_type_is_known_with_the_same_parent():
    named = {t: n for n, t in vars(stock.EventTypes).items() if isinstance(t, type)}
    assert set(named.values()) == set(ev.PARENTS) - OURS
    assert OURS == {"FLEETVISOR_PROCESS_HEALTH", "FLEETVISOR_PROCESS_HEALTH_HEALTHY",
                    "FLEETVISOR_PROCESS_HEALTH_UNHEALTHY", "FLEETVISOR_PROCESS_HEALTH_UNKNOWN"}
    assert all(ev.lineage(name)[-1] == "EVENT" for name in OURS)  # an EVENT subscriber gets them too
    for stock_type, name in named.items():
        # the nearest ancestor that has a name (stock has an unnamed STARTING/BACKOFF base)
        parent = next((named[t] for t in stock_type.__mro__[1:] if t in named), None)
        assert ev.PARENTS[name] == parent, name


def test_config_accepts_exactly_the_known_event_types():
    assert set(EVENT_TYPES) == set(ev.PARENTS)


@pytest.mark.parametrize("name", [n for n in ev.CONCRETE if n not in OURS])
def test_matching_follows_stock_isinstance(name):
    stock_type = getattr(stock.EventTypes, name)
    for subscribed in set(ev.PARENTS) - OURS:
        expected = issubclass(stock_type, getattr(stock.EventTypes, subscribed))
        assert ev.matches(name, [subscribed]) == expected, subscribed


def test_abstract_types():
    assert ev.ABSTRACT == {"EVENT", "PROCESS_STATE", "PROCESS_COMMUNICATION", "PROCESS_LOG",
                           "SUPERVISOR_STATE_CHANGE", "TICK", "PROCESS_GROUP", "FLEETVISOR_PROCESS_HEALTH"}
    assert ev.lineage("TICK_60") == ("TICK_60", "TICK", "EVENT")


# -- payloads ----------------------------------------------------------------------------------

STATES = ["STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"]


@pytest.mark.parametrize("new", STATES)
@pytest.mark.parametrize("expected", [True, False])
def test_process_state_payload_matches_stock(new, expected):
    proc = fake_process()
    stock_event = getattr(stock.EventTypes, f"PROCESS_STATE_{new}")(proc, ProcessStates.RUNNING, expected)
    extras = ev.process_state_extras(new, proc.pid, proc.backoff, expected)
    ours = ev.process_state(f"PROCESS_STATE_{new}", "web", "webs", "RUNNING", extras)
    assert ours.payload == stock_event.payload()


@pytest.mark.parametrize("data", [b"hello\n", b"", b"caf\xc3\xa9 \n", b"\xff\xfe bad"])
@pytest.mark.parametrize("channel", ["stdout", "stderr"])
def test_log_and_communication_payloads_match_stock(data, channel):
    proc = fake_process()
    log_type = stock.ProcessLogStdoutEvent if channel == "stdout" else stock.ProcessLogStderrEvent
    comm_type = (stock.ProcessCommunicationStdoutEvent if channel == "stdout"
                 else stock.ProcessCommunicationStderrEvent)
    ours = ev.process_log(channel, "web", "webs", 4242, data)
    assert ours.name == stock.getEventNameByType(log_type)
    assert ours.payload == log_type(proc, 4242, data).payload()
    ours = ev.process_communication(channel, "web", "webs", 4242, data)
    assert ours.name == stock.getEventNameByType(comm_type)
    assert ours.payload == comm_type(proc, 4242, data).payload()


def test_other_payloads_match_stock():
    assert ev.remote_communication("alert", "x\ny").payload == stock.RemoteCommunicationEvent("alert", "x\ny").payload()
    assert ev.supervisor_state(True).payload == stock.SupervisorRunningEvent().payload() == ""
    assert ev.supervisor_state(False).name == "SUPERVISOR_STATE_CHANGE_STOPPING"
    assert ev.process_group(True, "g").payload == stock.ProcessGroupAddedEvent("g").payload()
    assert ev.process_group(False, "g").name == "PROCESS_GROUP_REMOVED"
    assert ev.tick("TICK_60", 1_700_000_040).payload == stock.Tick60Event(1_700_000_040, None).payload()


@pytest.mark.parametrize("payload", ["", "processname:a groupname:a from_state:STOPPED tries:0", "é\n" * 3])
def test_envelope_matches_stock(payload):
    event = ev.Event("PROCESS_STATE_STARTING", payload, serial=7, pool_serials={"mon": 3})
    ours = ev.envelope(event, server="supervisor", pool="mon", pool_serial=3)
    fake_pool = SimpleNamespace(config=SimpleNamespace(name="mon", options=SimpleNamespace(identifier="supervisor")))
    theirs = EventListenerPool._eventEnvelope(fake_pool, stock.ProcessStateStartingEvent, 7, 3, payload)
    assert ours == theirs.encode("utf-8")


def test_serial_counts_from_zero_and_wraps():
    serial = ev.Serial()
    assert [serial.next() for _ in range(3)] == [0, 1, 2]
    serial.value = sys.maxsize
    assert serial.next() == 0


# -- the bus -----------------------------------------------------------------------------------

def test_bus_routes_by_family_in_subscription_order():
    bus = ev.EventBus()
    got: list[tuple[str, str]] = []
    off_a = bus.subscribe(["PROCESS_STATE"], lambda e: got.append(("a", e.name)))
    bus.subscribe(["PROCESS_STATE_RUNNING", "TICK"], lambda e: got.append(("b", e.name)))
    assert bus.wants("PROCESS_STATE_EXITED") and bus.wants("TICK_5") and not bus.wants("PROCESS_LOG_STDOUT")
    bus.publish(ev.Event("PROCESS_STATE_RUNNING", ""))
    bus.publish(ev.Event("PROCESS_STATE_EXITED", ""))
    bus.publish(ev.Event("TICK_5", ""))
    bus.publish(ev.Event("PROCESS_LOG_STDOUT", ""))
    assert got == [("a", "PROCESS_STATE_RUNNING"), ("b", "PROCESS_STATE_RUNNING"),
                   ("a", "PROCESS_STATE_EXITED"), ("b", "TICK_5")]
    off_a()
    assert not bus.wants("PROCESS_STATE_EXITED") and bus.wants("PROCESS_STATE_RUNNING")


def test_overlapping_subscription_delivers_once():
    bus = ev.EventBus()
    got = []
    bus.subscribe(["EVENT", "PROCESS_STATE", "PROCESS_STATE_RUNNING"], got.append)
    bus.publish(ev.Event("PROCESS_STATE_RUNNING", ""))
    assert len(got) == 1


def test_unknown_type_is_refused():
    with pytest.raises(ValueError):
        ev.EventBus().subscribe(["NOPE"], print)


# -- capture mode ------------------------------------------------------------------------------

def run_scanner(chunks: list[bytes], maxbytes: int = 1000):
    scanner = ev.CaptureScanner(maxbytes)
    pieces = [p for c in chunks for p in scanner.feed(c)] + scanner.flush()
    output = b"".join(d for k, d in pieces if k == "output")
    messages = [d for k, d in pieces if k == "message"]
    return output, messages


STREAM = (b"before\n" + ev.BEGIN_TOKEN + b"first message" + ev.END_TOKEN + b"middle\n"
          + ev.BEGIN_TOKEN + b"second\nmessage\n" + ev.END_TOKEN + b"after")


def test_capture_splits_output_and_messages():
    assert run_scanner([STREAM]) == (b"before\nmiddle\nafter", [b"first message", b"second\nmessage\n"])


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_capture_is_independent_of_read_boundaries(cut):
    assert run_scanner([STREAM[:cut], STREAM[cut:]]) == run_scanner([STREAM])


def test_capture_byte_by_byte():
    assert run_scanner([bytes([b]) for b in STREAM]) == run_scanner([STREAM])


def test_capture_keeps_the_last_maxbytes():
    _, messages = run_scanner([ev.BEGIN_TOKEN + b"0123456789" + ev.END_TOKEN], maxbytes=4)
    assert messages == [b"6789"]


def test_held_partial_token_is_output_at_end_of_stream():
    assert run_scanner([b"data <!--XSUPER"]) == (b"data <!--XSUPER", [])


def test_unterminated_message_is_not_sent():
    assert run_scanner([b"a" + ev.BEGIN_TOKEN + b"never ends"]) == (b"a", [])


# -- ticks -------------------------------------------------------------------------------------

def test_timeslice():
    assert ev.timeslice(5, 1_700_000_003.9) == 1_700_000_000
    assert ev.timeslice(60, 1_700_000_003.9) == 1_699_999_980
    assert ev.timeslice(3600, 1_700_000_003.9) == 1_699_999_200


def test_ticker_fires_on_slice_changes_in_period_order():
    ticker = ev.Ticker(lambda e: None)
    start = 1_699_999_199.0  # one second before a 3600 s (and 60 s, and 5 s) boundary
    ticker._last = {p: ev.timeslice(p, start) for p, _ in ev.TICK_PERIODS}
    assert ticker.check(start + 0.5) == []
    due = ticker.check(start + 1.0)
    assert [(e.name, e.payload) for e in due] == [("TICK_5", "when:1699999200"), ("TICK_60", "when:1699999200"),
                                                 ("TICK_3600", "when:1699999200")]
    assert ticker.check(start + 4.9) == []
    assert [e.name for e in ticker.check(start + 6.0)] == ["TICK_5"]


def test_ticker_publishes_at_the_next_boundary():
    """With a fake clock 50 ms before a boundary, one timer is armed for the boundary (not a
    poll) and delivers TICK_5."""
    got: list[ev.Event] = []
    base = 1_700_000_004.95

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        fired = asyncio.Event()

        def publish(event: ev.Event) -> None:
            got.append(event)
            fired.set()
        ticker = ev.Ticker(publish, clock=lambda: base + (loop.time() - t0))
        ticker.start()
        started = loop.time()
        # the fake clock follows the loop's: the timer is due at the boundary, give or take
        # the moments start() took between reading the clock and arming the timer
        late = ticker._timer.when() - (t0 + 0.05 + ev.Ticker.SLACK)
        assert -1e-9 <= late <= started - t0  # (1e-9: float rounding)
        await asyncio.wait_for(fired.wait(), 30)
        ticker.stop()

    asyncio.run(main())
    assert [e.payload for e in got] == ["when:1700000005"]
