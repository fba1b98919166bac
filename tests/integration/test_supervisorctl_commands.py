"""Every supervisorctl command, run by the stock client against stock supervisord 4.3.0 and
against the agent with the same config: the same output and exit status (pids, times and
paths masked).

Tests that only look share one pair of daemons (`pair`) and must leave it as they found it,
which is checked after each of them; a test that changes anything gets a pair of its own
(`own_pair`). So every test starts from the same state, whatever ran before it.
"""

from __future__ import annotations

import re
import threading

import pytest

from tests.support import wait_for

from .ctlharness import PASSWORD, USER, Pair, Server, Streaming

PROGRAMS = """
[program:steady]
command=sleep 1000
startsecs=0

[program:chatty]
command=/bin/sh -c "echo out-line; echo err-line >&2; exec sleep 1000"
startsecs=0

[program:trapper]
command=/bin/sh -c "trap '' HUP USR1; exec sleep 1000"
startsecs=0

[program:manual]
command=sleep 1000
autostart=false
startsecs=0

[program:crasher]
command=/bin/sh -c "exit 3"
autostart=false
startsecs=1
startretries=0

[program:missing]
command=/nonexistent/binary
autostart=false

[program:noexec]
command=%(here)s/supervisord.conf
autostart=false

[group:grp]
programs=g1,g2

[program:g1]
command=sleep 1000
startsecs=0

[program:g2]
command=sleep 1000
startsecs=0
priority=10
"""

AUTOSTARTED = ("steady", "chatty", "trapper", "grp:g1", "grp:g2")


def start_pair(directory) -> Pair:
    pair = Pair(directory, PROGRAMS)
    try:
        for name in AUTOSTARTED:
            pair.for_each(lambda s: s.wait_state(name, "RUNNING"))
    except BaseException:
        pair.close()
        raise
    return pair


def processes(pair: Pair) -> list[dict]:
    """What a test that only looks must not change: every process's state, pid and times."""
    return [{(i["group"], i["name"]): (i["statename"], i["pid"], i["start"], i["stop"])
             for i in server.rpc().supervisor.getAllProcessInfo()} for server in (pair.stock, pair.agent)]


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory):
    pair = start_pair(tmp_path_factory.mktemp("ctl"))
    try:
        yield pair, processes(pair)
    finally:
        pair.close()


@pytest.fixture
def pair(shared_pair):
    """The module's pair, for a test that only looks."""
    pair, before = shared_pair
    yield pair
    assert processes(pair) == before, "the test changed the shared daemons: it needs `own_pair`"


@pytest.fixture(scope="module")
def retiring():
    """Pairs whose test is over, stopping in the background (stock supervisord takes a second
    per priority level to shut down); the module waits for them at its end."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join()


@pytest.fixture
def own_pair(tmp_path, retiring):
    """A pair for this test alone, freshly started."""
    pair = start_pair(tmp_path)
    yield pair
    thread = threading.Thread(target=pair.close)
    thread.start()
    retiring.append(thread)


def wait_logged(server: Server, name: str, text: str, count: int = 1) -> None:
    """Output lands in a log a moment after the spawn: wait until `name`'s stdout log holds
    `text` `count` times."""
    wait_for(lambda: server.rpc().supervisor.tailProcessStdoutLog(name, 0, 4096)[0].count(text) >= count,
             10, f"{count} x {text!r} in the log of {name}")


# -- status, version, pid --------------------------------------------------------------------

def test_status_all_exits_3_when_something_is_stopped(pair):
    rc, out = pair.same("status")
    assert rc == 3
    assert re.search(r"^steady +RUNNING +pid N, uptime T$", out, re.M)
    assert re.search(r"^manual +STOPPED +Not started$", out, re.M)
    assert out.index("chatty") < out.index("grp:g1") < out.index("grp:g2") < out.index("steady")


STATUS_CASES = {
    ("steady",): 0, ("grp:*",): 0, ("steady", "manual"): 3, ("nosuch",): 4,
    ("nosuch:*", "grp:nosuch"): 4,
}


def test_status_of_names(pair):
    results = pair.same_many(*(("status", *args) for args in STATUS_CASES))
    assert [rc for rc, _ in results] == list(STATUS_CASES.values())


def test_version(pair):
    assert pair.same("version") == (0, "4.3.0\n")


PID_CASES = {("steady",): 0, ("manual",): 7, ("all",): 0, ("nosuch",): 1}


def test_pid(pair):
    results = pair.same_many(*(("pid", *args) for args in PID_CASES))
    assert [rc for rc, _ in results] == list(PID_CASES.values())


def test_pid_is_the_daemons(pair):
    assert pair.agent.ctl("pid").out.strip() == str(pair.agent.daemon.proc.pid)
    info = pair.agent.rpc().supervisor.getProcessInfo("steady")
    assert pair.agent.ctl("pid", "steady").out.strip() == str(info["pid"])


# -- start, stop, restart ----------------------------------------------------------------------

def test_start_and_stop_one_process(own_pair):
    pair = own_pair
    assert pair.same("start", "manual") == (0, "manual: started\n")
    assert pair.same("start", "manual") == (0, "manual: ERROR (already started)\n")
    assert pair.same("status", "manual")[0] == 0
    assert pair.same("stop", "manual") == (0, "manual: stopped\n")
    assert pair.same("stop", "manual") == (0, "manual: ERROR (not running)\n")
    assert pair.same("status", "manual")[0] == 3


def test_bad_names(pair):
    for rc, out in pair.same_many(*((command, "nosuch", "nosuch:*", "grp:nosuch")
                                    for command in ("start", "stop", "restart"))):
        assert "no such process" in out and "no such group" in out


def test_usage_errors(pair):
    # Most usage errors never reach the server; these are checked after talking to it.
    for rc, out in pair.same_many(("start",), ("signal", "HUP"), ("maintail", "bogus"),
                                  ("tail", "-x", "chatty")):
        assert rc != 0 and out


def test_start_failures(own_pair):
    pair = own_pair
    assert pair.same("start", "crasher") == (7, "crasher: ERROR (spawn error)\n")
    pair.for_each(lambda s: s.wait_state("crasher", "FATAL"))
    rc, out = pair.same("status", "crasher")
    assert (rc, out.split()) == (3, ["crasher", "FATAL", "Exited", "too", "quickly", "(process",
                                     "log", "may", "have", "details)"])
    assert pair.same("start", "missing") == (1, "missing: ERROR (no such file)\n")
    assert pair.same("start", "noexec") == (1, "noexec: ERROR (file is not executable)\n")


def test_group_start_stop_restart(own_pair):
    pair = own_pair
    assert pair.same_lines("stop", "grp:*") == (0, ["grp:g1: stopped", "grp:g2: stopped"])
    assert pair.same("stop", "grp:*") == (0, "")
    assert pair.same_lines("start", "grp:*") == (0, ["grp:g1: started", "grp:g2: started"])
    assert pair.same_lines("restart", "grp:*")[1] == ["grp:g1: started", "grp:g1: stopped",
                                                      "grp:g2: started", "grp:g2: stopped"]
    assert pair.same("restart", "grp:g1", "steady")[1] == ("grp:g1: stopped\nsteady: stopped\n"
                                                           "grp:g1: started\nsteady: started\n")


def test_group_results_come_in_priority_order(own_pair):
    pair = own_pair
    """Processes settling together are reported by priority (g2 has the lower number)."""
    assert pair.agent.ctl("stop", "grp:*").out == "grp:g2: stopped\ngrp:g1: stopped\n"
    assert pair.agent.ctl("start", "grp:*").out == "grp:g2: started\ngrp:g1: started\n"


def test_start_all_and_stop_all(own_pair):
    pair = own_pair
    rc, out = pair.same_lines("start", "all")
    assert "manual: started" in out and "crasher: ERROR (spawn error)" in out
    pair.for_each(lambda s: s.wait_state("crasher", "FATAL"))
    rc, out = pair.same_lines("stop", "all")
    assert rc == 0 and "steady: stopped" in out
    assert pair.same("status")[0] == 3
    pair.same_lines("start", *AUTOSTARTED)
    pair.same("status", *AUTOSTARTED)


# -- signal ------------------------------------------------------------------------------------

SIGNAL_CASES = {
    ("HUP", "trapper"): 0, ("SIGUSR1", "trapper", "manual"): 7, ("BOGUS", "trapper"): 1,
    ("1", "nosuch", "nosuch:*"): 1, ("0", "grp:*"): 0, ("0", "all"): 0, ("BOGUS", "all"): 1,
}


def test_signal(pair):
    results = pair.same_many(*(("signal", *args) for args in SIGNAL_CASES))
    assert [rc for rc, _ in results] == list(SIGNAL_CASES.values())
    pair.same("status", "trapper", "steady", "grp:*")


# -- logs --------------------------------------------------------------------------------------

def test_tail(pair):
    pair.same_many(*(("tail", *args) for args in [
        ("-5", "chatty"), ("-1600", "chatty", "stderr"), ("nosuch",), ("chatty", "bogus"),
        ("manual",), ("grp:g1",)]))


def test_tail_shows_the_output(own_pair):
    pair = own_pair
    pair.for_each(lambda s: wait_logged(s, "chatty", "out-line"))
    pair.same("restart", "chatty")  # a second run: its log goes on after the first
    pair.for_each(lambda s: wait_logged(s, "chatty", "out-line", count=2))
    assert pair.same("tail", "chatty") == (0, "out-line\nout-line\n\n")
    wait_for(lambda: pair.both("tail", "chatty", "stderr") == ((0, "err-line\nerr-line\n\n"),) * 2, 10,
             "both runs in both stderr logs")


def test_maintail(pair):
    result = pair.agent.ctl("maintail", "-200")
    log = (pair.agent.dir / "main.log").read_bytes()
    assert (result.rc, result.out) == (0, log[-200:].decode() + "\n")


def test_clear(own_pair):
    pair = own_pair
    pair.for_each(lambda s: wait_logged(s, "chatty", "out-line"))  # what there is to clear
    assert pair.same("clear", "chatty") == (0, "chatty: cleared\n")
    assert pair.same("tail", "chatty") == (0, "\n")
    assert pair.same("clear", "nosuch")[0] == 1
    # stock takes seconds to answer this one (it clears one log per 50 ms tick and then
    # some), so only the agent runs it; this is the answer stock gives.
    assert tuple(pair.agent.ctl("clear", "all")) == (0, (
        "chatty: cleared\ncrasher: cleared\ngrp:g2: cleared\ngrp:g1: cleared\nmanual: cleared\n"
        "missing: cleared\nnoexec: cleared\nsteady: cleared\ntrapper: cleared\n"))


def test_avail(pair):
    rc, out = pair.same("avail")
    assert re.search(r"^grp:g2 +in use +auto +999:10$", out, re.M)
    assert re.search(r"^manual +in use +manual +999:999$", out, re.M)


# -- over TCP with basic auth ------------------------------------------------------------------

def test_tcp_with_password(pair):
    results = pair.same_many(("status",), ("tail", "chatty"), url="TCP", user=USER,
                             password=PASSWORD)
    assert [rc for rc, _ in results] == [3, 0]


def test_tcp_refuses_wrong_credentials(pair):
    for user, password in [(USER, "wrong"), (None, None)]:
        rc, out = pair.same("status", url="TCP", user=user, password=password)
        assert rc == 1 and out.startswith("Server requires authentication\n")


# -- streams -----------------------------------------------------------------------------------

def test_tail_f_follows_and_ends_on_ctrl_c(pair):
    outputs = []
    for server in (pair.stock, pair.agent):
        stream = Streaming(server, "tail", "-f", "chatty", "stderr")
        try:
            stream.wait_for_text("err-line")
            assert stream.interrupt() == 0
        finally:
            stream.kill()
        outputs.append(stream.output)
    assert outputs[1] == outputs[0] == "==> Press Ctrl-C to exit <==\nerr-line\n\n"


def test_maintail_f_streams_new_lines(own_pair):
    pair = own_pair
    stream = Streaming(pair.agent, "maintail", "-f")
    try:
        stream.wait_for_text("==> Press Ctrl-C to exit <==")
        pair.agent.ctl("stop", "manual")
        pair.agent.ctl("start", "manual")
        stream.wait_for_text("spawned: 'manual'")
        assert stream.interrupt() == 0
    finally:
        stream.kill()


def test_fg_refusals(pair):
    for rc, out in pair.same_many(("fg", "manual"), ("fg", "nosuch")):
        assert rc == 1 and out.startswith(("ERROR", "Error"))


# -- reread, update, add, remove -------------------------------------------------------------

CHANGED = PROGRAMS.replace("""[program:chatty]
command=/bin/sh -c "echo out-line; echo err-line >&2; exec sleep 1000"
startsecs=0
""", "").replace("""[program:steady]
command=sleep 1000
""", """[program:steady]
command=sleep 1001
""") + """
[program:newbie]
command=sleep 1000
startsecs=0
"""


def test_reread_update_add_remove(own_pair):
    pair = own_pair
    trapper_pid = pair.agent.rpc().supervisor.getProcessInfo("trapper")["pid"]
    assert pair.same("reread") == (0, "No config updates to processes\n")
    pair.rewrite(CHANGED)
    assert pair.same("reread") == (0, "chatty: disappeared\nnewbie: available\nsteady: changed\n")
    rc, out = pair.same("avail")
    assert re.search(r"^newbie +avail +auto +999:999$", out, re.M)
    assert pair.same("update", "nosuch")[1] == "ERROR: no such group: nosuch\n"
    assert pair.same("update") == (0, "chatty: stopped\nchatty: removed process group\n"
                                      "steady: stopped\nsteady: updated process group\n"
                                      "newbie: added process group\n")
    assert pair.same("update") == (0, "")
    pair.for_each(lambda s: s.wait_state("newbie", "RUNNING"))
    rc, out = pair.same("status")
    assert "chatty" not in out and re.search(r"^newbie +RUNNING", out, re.M)
    # only what changed was restarted
    assert pair.agent.rpc().supervisor.getProcessInfo("trapper")["pid"] == trapper_pid
    assert pair.same("remove", "newbie") == (1, "ERROR: process/group still running: newbie\n")
    assert pair.same("add", "newbie") == (0, "ERROR: process group already active\n")
    assert pair.same("add", "nosuch") == (1, "ERROR: no such process/group: nosuch\n")
    assert pair.same("remove", "nosuch") == (1, "ERROR: no such process/group: nosuch\n")
    pair.same("stop", "newbie")
    assert pair.same("remove", "newbie") == (0, "newbie: removed process group\n")
    assert pair.same("status", "newbie")[0] == 4
    assert pair.same("add", "newbie") == (0, "newbie: added process group\n")
    pair.for_each(lambda s: s.wait_state("newbie", "RUNNING"))
    pair.same("status", "newbie")


def test_reread_of_a_broken_file_changes_nothing(own_pair):
    pair = own_pair
    agent = pair.agent
    available = agent.ctl("avail")
    agent.config.write_text(agent.config.read_text() + "\n[program:broken]\n")
    rc, out = agent.ctl("reread")
    assert rc == 1 and out.startswith("ERROR: CANT_REREAD: ")
    assert "broken" in out
    assert agent.ctl("avail") == available
    assert agent.ctl("status", *AUTOSTARTED).rc == 0


# -- reload and shutdown -------------------------------------------------------------------------

def test_reload(own_pair):
    pair = own_pair
    old = pair.agent.rpc().supervisor.getProcessInfo("steady")["pid"]
    assert pair.same("reload") == (0, "Restarted supervisord\n")
    for name in AUTOSTARTED:
        pair.for_each(lambda s: s.wait_state(name, "RUNNING", timeout=30))
    assert pair.agent.rpc().supervisor.getProcessInfo("steady")["pid"] != old
    pair.same("status", *AUTOSTARTED)


SLOW = CHANGED + """
[program:slowstop]
; stops only once the test creates the file "release"
command=/bin/sh -c "trap 'while [ ! -e release ]; do sleep 0.05; done; exit 0' TERM; while :; do sleep 0.1; done"
directory=%(here)s
startsecs=0
"""


def test_shutdown(own_pair):
    pair = own_pair
    pair.rewrite(SLOW)
    pair.same("update")
    pair.for_each(lambda s: s.wait_state("slowstop", "RUNNING"))
    assert pair.same("shutdown") == (0, "Shut down\n")
    assert pair.same("shutdown") == (0, "ERROR: already shutting down\n")
    assert pair.same("reload") == (1, "ERROR: already shutting down\n")
    assert pair.same("avail") == (1, "ERROR: supervisor shutting down\n")
    pair.for_each(lambda s: (s.dir / "release").touch())
    assert pair.agent.daemon.proc.wait(30) == 0
    assert pair.stock.daemon.proc.wait(30) == 0
    assert not (pair.agent.dir / "s.sock").exists()
    assert pair.same("shutdown") == (1, "ERROR: unix://DIR/s.sock no such file (already shut down?)\n")
    assert pair.same("status") == (4, "unix://DIR/s.sock no such file\n")
