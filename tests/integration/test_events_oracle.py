"""The same config and the same recording listener under stock supervisord 4.3.0 and under the
agent: the events each listener received must be the same, pids and timing aside."""

from __future__ import annotations

import re
import signal
from collections import defaultdict
from pathlib import Path

import pytest

from .events_helpers import conf, has, mask_pids, recorder, wait_records
from .harness import AGENT, SUPERVISORD, Daemon

TALKER = r"""#!/bin/sh
echo "plain line one"
printf 'pre<!--XSUPERVISOR:BEGIN-->hello listeners<!--XSUPERVISOR:END-->post: a line long enough to be flushed\n'
printf 'to stderr <!--XSUPERVISOR:BEGIN-->err message\nwith two lines<!--XSUPERVISOR:END--> and a tail long enough for stock to flush it\n' >&2
printf 'caf\303\251 and the final line of output, long enough to be flushed\n'
exec sleep 1000
"""

PROGRAMS = """
[eventlistener:rec]
command={recorder}
events=EVENT
buffer_size=200

[program:ok]
command=/bin/sh -c "sleep 1.2; exit 0"
autorestart=false

[program:bad]
command=/bin/sh -c "sleep 1.2; exit 3"
autorestart=false

[program:crasher]
command=/bin/sh -c "exit 1"
startretries=1

; stopped after talker and before the listener, slowly: the listener has time to get
; talker's STOPPED before it is stopped itself (neither daemon waits for a pool to drain)
[program:guard]
command=/bin/sh -c "trap 'sleep 0.5; kill $!; exit 0' TERM; sleep 1000 & wait"
priority=500
startsecs=0

[program:talker]
command=%(here)s/talker.sh
startsecs=0
autorestart=false
stdout_capture_maxbytes=1KB
stderr_capture_maxbytes=1KB
stdout_events_enabled=true
stderr_events_enabled=true
"""


def run(command: list[str], tmp_path: Path) -> list[dict]:
    out = tmp_path / "events.jsonl"
    (tmp_path / "talker.sh").write_text(TALKER)
    (tmp_path / "talker.sh").chmod(0o755)
    config = conf(tmp_path, PROGRAMS.format(recorder=recorder(out, "--linger")))
    d = Daemon(config, command)
    try:
        wait_records(out, lambda r: (has("PROCESS_STATE_FATAL")(r) and has("PROCESS_STATE_EXITED", 2)(r)
                                     and has("PROCESS_COMMUNICATION_STDERR")(r)
                                     and any("final line" in x["payload"] for x in r)),
                     timeout=20, what="the programs' events")
        d.signal(signal.SIGTERM)
        wait_records(out, lambda r: any(x["payload"].startswith("processname:talker groupname:talker "
                                                                "from_state:STOPPING") for x in r),
                     timeout=20, what="talker stopped")
        assert d.stop(30) == 0
    finally:
        d.kill()
    return wait_records(out, lambda r: True)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, list[dict]]:
    return {"stock": run(SUPERVISORD, tmp_path_factory.mktemp("stock")),
            "ours": run(AGENT, tmp_path_factory.mktemp("agent"))}


def by_kind(recs: list[dict]) -> dict[str, list]:
    """What must agree, whatever the interleaving and read sizes: per process the sequence
    of its state events, per channel the logged bytes and the messages, and the rest."""
    out: dict[str, list] = defaultdict(list)
    for r in recs:
        name, payload = r["headers"]["eventname"], r["payload"]
        if name.startswith("PROCESS_STATE_"):
            process = payload.split()[0]
            if process == "processname:guard":
                continue
            out[f"state {process}"].append((name, mask_pids(payload)))
        elif name.startswith("PROCESS_LOG_"):
            head, data = payload.split("\n", 1)
            out[f"log {mask_pids(head)}"].append(data)
        elif name.startswith(("PROCESS_COMMUNICATION_", "PROCESS_GROUP_", "SUPERVISOR_STATE_")):
            out[name].append(mask_pids(payload))
    for key in [k for k in out if k.startswith("log ")]:
        out[key] = ["".join(out[key])]
    return dict(out)


def test_same_events_as_supervisord(recorded):
    ours, stock = by_kind(recorded["ours"]), by_kind(recorded["stock"])
    assert ours.keys() == stock.keys()
    for key in stock:
        assert ours[key] == stock[key], key


def test_expected_payloads(recorded):
    kinds = by_kind(recorded["ours"])
    assert kinds["state processname:crasher"] == [
        ("PROCESS_STATE_STARTING", "processname:crasher groupname:crasher from_state:STOPPED tries:0"),
        ("PROCESS_STATE_BACKOFF", "processname:crasher groupname:crasher from_state:STARTING tries:1"),
        ("PROCESS_STATE_STARTING", "processname:crasher groupname:crasher from_state:BACKOFF tries:1"),
        ("PROCESS_STATE_BACKOFF", "processname:crasher groupname:crasher from_state:STARTING tries:2"),
        ("PROCESS_STATE_FATAL", "processname:crasher groupname:crasher from_state:BACKOFF"),
    ]
    assert kinds["state processname:bad"][-1] == (
        "PROCESS_STATE_EXITED", "processname:bad groupname:bad from_state:RUNNING expected:0 pid:N")
    assert kinds["state processname:ok"][-1] == (
        "PROCESS_STATE_EXITED", "processname:ok groupname:ok from_state:RUNNING expected:1 pid:N")
    assert kinds["state processname:talker"][-2:] == [
        ("PROCESS_STATE_STOPPING", "processname:talker groupname:talker from_state:RUNNING pid:N"),
        ("PROCESS_STATE_STOPPED", "processname:talker groupname:talker from_state:STOPPING pid:N"),
    ]
    assert kinds["PROCESS_COMMUNICATION_STDOUT"] == ["processname:talker groupname:talker pid:N\nhello listeners"]
    assert kinds["PROCESS_COMMUNICATION_STDERR"] == [
        "processname:talker groupname:talker pid:N\nerr message\nwith two lines"]
    assert kinds["log processname:talker groupname:talker pid:N channel:stdout"] == [
        "plain line one\nprehello listenerspost: a line long enough to be flushed\n"
        "café and the final line of output, long enough to be flushed\n"]
    assert kinds["PROCESS_GROUP_ADDED"] == [f"groupname:{g}\n" for g in ("rec", "guard", "bad", "crasher", "ok",
                                                                         "talker")]
    assert kinds["SUPERVISOR_STATE_CHANGE_RUNNING"] == [""]
    assert kinds["SUPERVISOR_STATE_CHANGE_STOPPING"] == [""]


def test_envelopes(recorded):
    """Every header as stock writes it; serials count up from 0 with no gaps (nothing was
    dropped) and, with one pool, the pool serial equals the global one."""
    for who, recs in recorded.items():
        for i, r in enumerate(recs):
            h = r["headers"]
            assert list(h) == ["ver", "server", "serial", "pool", "poolserial", "eventname", "len"], who
            assert (h["ver"], h["server"], h["pool"]) == ("3.0", "supervisor", "rec")
            assert int(h["len"]) == len(r["payload"])
        if who == "ours":
            assert [int(r["headers"]["serial"]) for r in recs] == list(range(len(recs)))
            assert all(r["headers"]["serial"] == r["headers"]["poolserial"] for r in recs)


def test_captured_text_stays_out_of_the_log(tmp_path_factory, recorded):
    # the agent's own talker log (the last AUTO stdout log of the agent run's directory)
    logs = [p for p in Path(tmp_path_factory.getbasetemp()).glob("agent*/talker-stdout---*.log")]
    assert logs
    text = logs[0].read_text()
    assert "hello listeners" not in text and "XSUPERVISOR" not in text
    assert re.search(r"^plain line one\nprepost: ", text)
