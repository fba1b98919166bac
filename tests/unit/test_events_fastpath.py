"""The event fast path: output events rendered lazily (yet byte for byte as stock renders them),
listeners' answers read before more output, READY answered at once, envelopes prepared ahead."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from supervisor import events as stock
from supervisor.process import EventListenerPool

from fleetvisor.agent import events as ev
from tests.unit.test_listener import answer, make_pool, ready


@pytest.mark.parametrize("data", [b"hello\n", b"", b"caf\xc3\xa9 \n", b"\xff\xfe bad", b"x" * 70000])
@pytest.mark.parametrize("channel", ["stdout", "stderr"])
def test_output_event_envelopes_match_stock(data, channel):
    proc = SimpleNamespace(config=SimpleNamespace(name="web"), group=SimpleNamespace(config=SimpleNamespace(name="webs")),
                           pid=4242)
    fake_pool = SimpleNamespace(config=SimpleNamespace(name="mon", options=SimpleNamespace(identifier="supervisor")))
    for ours, theirs in ((ev.process_log(channel, "web", "webs", 4242, data),
                          (stock.ProcessLogStdoutEvent if channel == "stdout" else stock.ProcessLogStderrEvent)),
                         (ev.process_communication(channel, "web", "webs", 4242, data),
                          (stock.ProcessCommunicationStdoutEvent if channel == "stdout"
                           else stock.ProcessCommunicationStderrEvent))):
        ours.serial = 7
        wire = ev.envelope(ours, server="supervisor", pool="mon", pool_serial=3)
        expected = EventListenerPool._eventEnvelope(fake_pool, theirs, 7, 3, theirs(proc, 4242, data).payload())
        assert wire == expected.encode("utf-8")


def test_a_listener_holding_an_event_is_awaited_until_it_answers():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=10)
        listener = pool.listeners[0]
        ready(procs["l0"])
        core.events.publish(ev.tick("TICK_5", 5))
        await asyncio.sleep(0)
        assert list(core.events.awaiting) == [listener]
        answer(procs["l0"], b"OK")
        assert not core.events.awaiting
        ready(procs["l0"])
        core.events.publish(ev.tick("TICK_5", 10))
        await asyncio.sleep(0)
        assert list(core.events.awaiting) == [listener]
        listener.exited()
        assert not core.events.awaiting
    asyncio.run(scenario())


def test_ready_sends_the_next_buffered_event_at_once():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=10)
        for i in range(2):
            core.events.publish(ev.tick("TICK_5", i))
        await asyncio.sleep(0)
        ready(procs["l0"])
        assert len(procs["l0"].stdin) == 1  # no loop pass needed
        answer(procs["l0"], b"OK")
        ready(procs["l0"])
        assert len(procs["l0"].stdin) == 2 and not pool.buffer
    asyncio.run(scenario())


def test_bytes_after_ready_are_still_judged_in_the_ready_state():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=10)
        core.events.publish(ev.tick("TICK_5", 0))
        await asyncio.sleep(0)
        procs["l0"].listener.output(b"READY\ngarbage")
        assert pool.listeners[0].state == ev_state("UNKNOWN")
        assert procs["l0"].stdin == [] and len(pool.buffer) == 1
    asyncio.run(scenario())


def ev_state(name):
    from fleetvisor.agent.listener import ListenerState
    return ListenerState[name]


def test_envelope_made_while_the_listener_is_busy_is_the_one_sent():
    async def scenario():
        pool, core, procs = make_pool(buffer_size=2)
        ready(procs["l0"])
        core.events.publish(ev.tick("TICK_5", 0))
        await asyncio.sleep(0)  # sent: l0 is busy
        for when in (5, 10, 15):  # the third overflows the buffer, dropping the prepared head
            core.events.publish(ev.tick("TICK_5", when))
        head = pool.buffer[0]
        assert head.payload == "when:10"
        answer(procs["l0"], b"OK")
        ready(procs["l0"])
        assert procs["l0"].stdin[-1] == ev.envelope(head, server="supervisor", pool="pool",
                                                    pool_serial=head.pool_serials["pool"])
        assert pool._prepared is None or pool._prepared[0] is pool.buffer[0]
    asyncio.run(scenario())
