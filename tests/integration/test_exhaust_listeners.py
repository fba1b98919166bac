"""Event listeners that never answer, under a flood of events: one never reads nor says
READY, one says READY and then neither reads its stdin (filled up besides) nor answers.

Their pools keep `buffer_size` events and drop the oldest with supervisord's error line, the
agent's memory stays bounded while hundreds of megabytes of output events pass, a healthy
listener in another pool gets every event, and the daemon keeps answering.
"""

from __future__ import annotations

import re
import sys
import xmlrpc.client

from tests.support import free_port

from .events_helpers import recorder, wait_records
from .exhaustion import LatencyProbe, probed_config
from .test_exhaust_output import RSS_GROWTH_BOUND, WRITER, peak_rss

MEGABYTES = 200
# Started and stopped by the tests for state events.
SLEEPER = "\n[program:sleeper]\ncommand=sleep 1000\nautostart=false\nstartsecs=0\n"


def test_listeners_that_never_answer(tmp_path, daemons):
    port = free_port()
    out = tmp_path / "good.jsonl"
    d = daemons(probed_config(tmp_path, port, f"""
        [eventlistener:mute]
        command=sleep 1000
        events=PROCESS_LOG,PROCESS_STATE
        buffer_size=10

        [eventlistener:stuck]
        command=/bin/sh -c "echo READY; exec sleep 1000"
        events=PROCESS_LOG,PROCESS_STATE
        buffer_size=10

        [eventlistener:good]
        command={recorder(out)}
        events=PROCESS_STATE
        buffer_size=100  ; room for every state change of this test, however slow it runs

        [program:flood]
        command={sys.executable} {WRITER} {MEGABYTES}
        autostart=false
        autorestart=false
        startsecs=0
        stdout_events_enabled=true
    """, SLEEPER))
    rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
    d.wait_line(r"success: good entered RUNNING state")
    d.wait_line(r"success: stuck entered RUNNING state")
    with LatencyProbe(port) as probe:
        before = peak_rss(d.proc.pid)
        # More than its stdin pipe holds, for a listener that never reads: queued, not waited on.
        assert rpc.supervisor.sendProcessStdin("stuck", "y" * (1 << 20)) is True
        assert rpc.supervisor.startProcess("flood") is True
        for _ in range(3):
            assert rpc.supervisor.startProcess("sleeper") is True
            assert rpc.supervisor.stopProcess("sleeper") is True
        d.wait_line(r"exited: flood \(exit status 0; expected\)", timeout=120)
        grown = peak_rss(d.proc.pid) - before
        # The healthy pool got every state change of sleeper (STARTING, RUNNING, STOPPING,
        # STOPPED, three times) while the others overflowed.
        states = wait_records(out, lambda recs: len(_of(recs, "sleeper")) >= 12, 20, "sleeper's state events")
    probe.assert_bounded()
    assert [r["headers"]["eventname"] for r in _of(states, "sleeper")] == [
        "PROCESS_STATE_STARTING", "PROCESS_STATE_RUNNING", "PROCESS_STATE_STOPPING", "PROCESS_STATE_STOPPED"] * 3
    assert grown < RSS_GROWTH_BOUND, f"the agent's peak RSS grew by {grown >> 20} MB"
    for pool in ("mute", "stuck"):
        dropped = [int(m.group(1)) for m in d.wait_line(
            rf"^ERRO pool {pool} event buffer overflowed, discarding event (\d+)$", count=100)]
        assert dropped == sorted(dropped), "the oldest event is the one dropped"
    assert not any(re.search(r"pool good event buffer overflowed", m) for m in d.messages())
    info = {p["name"]: p["statename"] for p in rpc.supervisor.getAllProcessInfo()}
    assert info["mute"] == info["stuck"] == info["good"] == "RUNNING"


def _of(recs: list[dict], name: str) -> list[dict]:
    return [r for r in recs if r["payload"].startswith(f"processname:{name} ")]


def test_listener_that_answers_with_an_endless_line(tmp_path, daemons):
    """A RESULT line that never ends is a protocol violation once it is longer than any RESULT
    line can be, not a buffer that grows (and is copied) with every read."""
    port = free_port()
    d = daemons(probed_config(tmp_path, port, f"""
        [eventlistener:babbler]
        command=/bin/sh -c "echo READY; read header; exec {sys.executable} {WRITER} {MEGABYTES}"
        events=PROCESS_STATE
        stdout_logfile=NONE
        autorestart=false
    """, SLEEPER))
    rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
    d.wait_line(r"success: babbler entered RUNNING state")
    with LatencyProbe(port) as probe:
        before = peak_rss(d.proc.pid)
        assert rpc.supervisor.startProcess("sleeper") is True  # the event it is sent
        d.wait_line(r"^WARN babbler: bad result line: 'x+'$", timeout=30)
        d.wait_line(r"exited: babbler \(exit status 0; expected\)", timeout=120)
        grown = peak_rss(d.proc.pid) - before
    probe.assert_bounded()
    assert grown < RSS_GROWTH_BOUND, f"the agent's peak RSS grew by {grown >> 20} MB"
    assert sum("babbler: has entered the UNKNOWN state" in m for m in d.messages()) == 1
