"""Listener pools with real listener processes (stock childutils): buffering, rebuffering,
protocol violations, ticks and the listener's own output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import wait_for

from .events_helpers import conf, has, named, recorder, wait_records
from .harness import AGENT, SUPERVISORD


@pytest.fixture(params=["agent", "stock"])
def daemon(request, daemons):
    """Each behaviour test runs under the agent and, as the judge, under stock supervisord."""
    command = AGENT if request.param == "agent" else SUPERVISORD
    return lambda config: daemons(config, command)

# A program that emits `n` captured messages m0..m(n-1), then sleeps.
COMM_BURST = r"""/bin/sh -c 'for i in $(seq 0 {last}); do printf "<!--XSUPERVISOR:BEGIN-->m$i<!--XSUPERVISOR:END-->"; done; exec sleep 1000'"""


def comm_messages(recs: list[dict]) -> list[str]:
    return [r["payload"].split("\n", 1)[1] for r in named("PROCESS_COMMUNICATION_STDOUT")(recs)]


def test_buffer_overflow_drops_the_oldest(tmp_path, daemon):
    out, gate = tmp_path / "events.jsonl", tmp_path / "gate"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out, "--gate", str(gate))}
        events=PROCESS_COMMUNICATION
        buffer_size=5
        startsecs=0

        [program:burst]
        command={COMM_BURST.format(last=14)}
        stdout_capture_maxbytes=1KB
        startsecs=0
    """)
    d = daemon(config)
    lines = d.wait_line(r"^ERRO pool rec event buffer overflowed, discarding event (\d+)$", count=10)
    gate.touch()
    recs = wait_records(out, lambda r: len(r) >= 5, what="5 events")
    assert comm_messages(recs) == [f"m{i}" for i in range(10, 15)]
    dropped = [int(m.group(1)) for m in lines]
    kept = [int(r["headers"]["serial"]) for r in recs]
    assert dropped == list(range(dropped[0], dropped[0] + 10))
    assert kept == list(range(dropped[-1] + 1, dropped[-1] + 6))
    assert [r["headers"]["poolserial"] for r in recs] == [str(i) for i in range(10, 15)]


def test_fail_puts_the_event_back_first(tmp_path, daemon):
    out = tmp_path / "events.jsonl"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out, "--fail-once")}
        events=PROCESS_COMMUNICATION_STDOUT
        startsecs=0

        [program:burst]
        command={COMM_BURST.format(last=2)}
        stdout_capture_maxbytes=1KB
        startsecs=0
    """)
    d = daemon(config)
    recs = wait_records(out, lambda r: len(r) >= 6, what="6 deliveries")
    # each event twice in a row (FAIL, then OK), in order, with the same serials
    assert comm_messages(recs) == ["m0", "m0", "m1", "m1", "m2", "m2"]
    serials = [(r["headers"]["serial"], r["headers"]["poolserial"]) for r in recs]
    assert serials[0::2] == serials[1::2]
    d.wait_line(r"^WARN rec: event was rejected$", count=3)


def test_listener_death_puts_the_event_back(tmp_path, daemon):
    out, marker = tmp_path / "events.jsonl", tmp_path / "died"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out, "--die-once", str(marker))}
        events=PROCESS_COMMUNICATION_STDOUT
        startsecs=0

        [program:burst]
        command={COMM_BURST.format(last=1)}
        stdout_capture_maxbytes=1KB
        startsecs=0
    """)
    d = daemon(config)
    recs = wait_records(out, lambda r: len(r) >= 3, what="3 deliveries")
    assert comm_messages(recs) == ["m0", "m0", "m1"]
    assert recs[0]["pid"] != recs[1]["pid"] == recs[2]["pid"]
    assert recs[0]["headers"]["serial"] == recs[1]["headers"]["serial"]
    d.wait_line(r"^WARN exited: rec \(exit status 7; not expected\)$")


def test_garbage_puts_the_listener_in_unknown(tmp_path, daemon):
    out = tmp_path / "events.jsonl"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out, "--garbage")}
        events=EVENT
        startsecs=0
    """, header=HEADER_DEBUG)
    d = daemon(config)
    d.wait_line(r"^DEBG rec: ACKNOWLEDGED -> UNKNOWN$")
    d.wait_line(r"^WARN rec: has entered the UNKNOWN state and will no longer receive events, this usually "
                r"indicates the process violated the eventlistener protocol$")
    assert not out.exists()


def test_bad_result_line_hands_the_event_to_another_listener(tmp_path, daemon):
    out = tmp_path / "events.jsonl"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out, "--bad-result")}
        process_name=rec_%(process_num)d
        numprocs=2
        events=PROCESS_COMMUNICATION_STDOUT
        startsecs=0

        [program:burst]
        command={COMM_BURST.format(last=0)}
        stdout_capture_maxbytes=1KB
        startsecs=0
    """)
    d = daemon(config)
    recs = wait_records(out, lambda r: len(r) >= 2, what="2 deliveries")
    assert comm_messages(recs) == ["m0", "m0"]
    assert recs[0]["pid"] != recs[1]["pid"]
    assert recs[0]["headers"]["serial"] == recs[1]["headers"]["serial"]
    first = d.wait_line(r"^WARN (rec_\d): bad result line: 'RESULT two'$", count=2)
    assert {m.group(1) for m in first} == {"rec_0", "rec_1"}


def test_tick_5_arrives_on_the_boundary(tmp_path, daemons):
    out = tmp_path / "events.jsonl"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out)}
        events=TICK_5
        startsecs=0
    """)
    daemons(config)
    recs = wait_records(out, has("TICK_5"), timeout=20, what="a TICK_5")
    whens = [int(r["payload"].removeprefix("when:")) for r in recs]
    assert all(w % 5 == 0 for w in whens)
    for r, when in zip(recs, whens):
        # never early; that the timer is armed for the boundary itself, not a poll, is checked
        # in tests/unit/test_events.py without a wall clock
        assert r["time"] >= when


def test_listener_output_goes_to_its_logs(tmp_path, daemon):
    out = tmp_path / "events.jsonl"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command=/bin/sh -c 'echo on stderr >&2; exec {recorder(out)}'
        events=PROCESS_STATE_RUNNING
        startsecs=0
        stdout_logfile=%(here)s/rec.out
        stderr_logfile=%(here)s/rec.err
    """)
    daemon(config)
    wait_records(out, has("PROCESS_STATE_RUNNING"))
    # stdout carries the protocol (supervisord logs it too); stderr is the listener's own
    wait_for(lambda: (tmp_path / "rec.out").read_text().startswith("READY\nRESULT 2\nOKREADY\n"), 5, "protocol log")
    assert (tmp_path / "rec.err").read_text() == "on stderr\n"


def test_log_events_only_when_enabled(tmp_path, daemon):
    out = tmp_path / "events.jsonl"
    config = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out)}
        events=PROCESS_LOG
        startsecs=0

        [program:quiet]
        command=/bin/sh -c 'echo not an event; exec sleep 1000'
        startsecs=0

        [program:loud]
        command=/bin/sh -c 'sleep 0.5; echo to out; echo to err >&2; exec sleep 1000'
        stdout_events_enabled=true
        stderr_events_enabled=true
        startsecs=0
    """)
    daemon(config)
    recs = wait_records(out, lambda r: len(r) >= 2, what="two log events")
    got = sorted((r["headers"]["eventname"], re.sub(r"pid:\d+", "pid:N", r["payload"])) for r in recs)
    assert got == [("PROCESS_LOG_STDERR", "processname:loud groupname:loud pid:N channel:stderr\nto err\n"),
                   ("PROCESS_LOG_STDOUT", "processname:loud groupname:loud pid:N channel:stdout\nto out\n")]
    assert "to out\n" in Path(next(tmp_path.glob("loud-stdout---*.log"))).read_text()


HEADER_DEBUG = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
loglevel=debug
"""


def test_remote_communication_over_xmlrpc(tmp_path, daemon):
    from supervisor import childutils

    out = tmp_path / "events.jsonl"
    config = conf(tmp_path, f"""
        [unix_http_server]
        file=%(here)s/sv.sock

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [eventlistener:rec]
        command={recorder(out)}
        events=REMOTE_COMMUNICATION
        startsecs=0
    """)
    daemon(config)

    def send() -> bool:
        rpc = childutils.getRPCInterface({"SUPERVISOR_SERVER_URL": f"unix://{tmp_path}/sv.sock"})
        try:
            return rpc.supervisor.sendRemoteCommEvent("alert", "disk full\non /var")
        except OSError:  # the socket is not there yet
            return False
    wait_for(send, 10, "the XML-RPC server")
    recs = wait_records(out, has("REMOTE_COMMUNICATION"))
    assert recs[0]["payload"] == "type:alert\ndisk full\non /var"
    assert recs[0]["headers"]["len"] == str(len("type:alert\ndisk full\non /var"))
