"""Every supervisor.* and system.* method over XML-RPC (unix socket, stock client transport),
against the agent and, where the answer is deterministic, against stock supervisord 4.3.0 for
the very same call."""

from __future__ import annotations

import re
import threading
import time
import xmlrpc.client

import pytest

from tests.support import wait_for

from .ctlharness import Pair, Server

PROGRAMS = """
[program:steady]
command=sleep 1000
startsecs=0

[program:chatty]
command=/bin/sh -c "echo out-line; echo err-line >&2; exec sleep 1000"
startsecs=0

[program:redirected]
command=/bin/sh -c "echo both >&2; exec sleep 1000"
redirect_stderr=true
startsecs=0

[program:echo]
command=cat
startsecs=0

[program:deaf]
command=/bin/sh -c "exec 0<&-; exec sleep 1000"
startsecs=0

[program:slowstart]
command=sleep 1000
startsecs=30
autostart=false

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

RUNNING = ("steady", "chatty", "redirected", "echo", "deaf", "grp:g1", "grp:g2")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    pair = Pair(tmp_path_factory.mktemp("rpc"), PROGRAMS)
    try:
        for name in RUNNING:
            pair.for_each(lambda s: s.wait_state(name, "RUNNING"))
        yield pair
    finally:
        pair.close()


def call(server: Server, method: str, *args):
    """The value, or ('fault', code, text)."""
    try:
        return getattr(server.rpc(), method)(*args)
    except xmlrpc.client.Fault as fault:
        return ("fault", fault.faultCode, fault.faultString)


def both(pair: Pair, method: str, *args):
    return call(pair.stock, method, *args), call(pair.agent, method, *args)


def mask_paths(value, server: Server):
    if isinstance(value, str):
        return value.replace(str(server.dir), "DIR")
    if isinstance(value, (list, tuple)):
        return type(value)(mask_paths(v, server) for v in value)
    if isinstance(value, dict):
        return {k: mask_paths(v, server) for k, v in value.items()}
    return value


def same(pair: Pair, method: str, *args, masker=lambda v, s: v):
    stock, agent = both(pair, method, *args)
    stock = masker(mask_paths(stock, pair.stock), pair.stock)
    agent = masker(mask_paths(agent, pair.agent), pair.agent)
    assert agent == stock, f"{method}{args}:\nstock: {stock!r}\nagent: {agent!r}"
    return agent


def mask_info(value, server: Server):
    """Process info structs with the run-dependent values masked."""
    if isinstance(value, list):
        return [mask_info(v, server) for v in value]
    if not isinstance(value, dict):
        return value
    masked = dict(value)
    for key in ("pid", "start", "stop", "now"):
        if key in masked:
            masked[key] = bool(masked[key])
    for key in ("logfile", "stdout_logfile", "stderr_logfile"):
        if isinstance(masked.get(key), str):
            masked[key] = re.sub(r"---supervisor-\w+\.log", "---X.log",
                                 masked[key].replace(str(server.dir), "DIR"))
    if "description" in masked:
        masked["description"] = re.sub(r"pid \d+, uptime [\d:]+", "pid N, uptime T",
                                       masked["description"])
    return masked


# -- the daemon --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["supervisor.getAPIVersion", "supervisor.getVersion",
                                    "supervisor.getSupervisorVersion",
                                    "supervisor.getIdentification", "supervisor.getState"])
def test_daemon_facts(pair, method):
    same(pair, method)


def test_daemon_facts_values(pair):
    rpc = pair.agent.rpc().supervisor
    assert (rpc.getAPIVersion(), rpc.getVersion(), rpc.getSupervisorVersion()) == ("3.0", "3.0", "4.3.0")
    assert rpc.getIdentification() == "supervisor"
    assert rpc.getState() == {"statecode": 1, "statename": "RUNNING"}
    assert rpc.getPID() == pair.agent.daemon.proc.pid


def test_introspection_matches_stock(pair):
    methods = same(pair, "system.listMethods")
    assert len(methods) == 41 and "system.multicall" in methods
    for method in methods:
        same(pair, "system.methodSignature", method)
        assert isinstance(call(pair.agent, "system.methodHelp", method), str)
    assert same(pair, "system.methodHelp", "nosuch.method") == ("fault", 4, "SIGNATURE_UNSUPPORTED")
    assert same(pair, "system.methodSignature", "x") == ("fault", 4, "SIGNATURE_UNSUPPORTED")


def test_method_help_documents_parameters(pair):
    help_text = call(pair.agent, "system.methodHelp", "supervisor.startProcess")
    assert "@param string name" in help_text and "@return boolean" in help_text


# -- process information -------------------------------------------------------------------------

def test_process_info_matches_stock(pair):
    for name in ("steady", "manual", "grp:g1", "redirected"):
        info = same(pair, "supervisor.getProcessInfo", name, masker=mask_info)
        assert set(info) == {"name", "group", "start", "stop", "now", "state", "statename",
                             "spawnerr", "exitstatus", "logfile", "stdout_logfile",
                             "stderr_logfile", "pid", "description"}
    for name in ("nosuch", "grp:*", "grp:nosuch", "grp"):
        assert same(pair, "supervisor.getProcessInfo", name)[:2] == ("fault", 10)


def test_all_process_info_matches_stock(pair):
    infos = same(pair, "supervisor.getAllProcessInfo", masker=mask_info)
    assert [(i["group"], i["name"]) for i in infos][:3] == [("chatty", "chatty"),
                                                            ("crasher", "crasher"), ("deaf", "deaf")]


def test_process_info_description(pair):
    info = pair.agent.rpc().supervisor.getProcessInfo("steady")
    assert info["description"] == f"pid {info['pid']}, uptime 0:00:{info['now'] - info['start']:02d}"
    assert pair.agent.rpc().supervisor.getProcessInfo("manual")["description"] == "Not started"


def test_all_config_info_matches_stock(pair):
    def masker(value, server):
        for info in value:
            for key in ("stdout_logfile", "stderr_logfile"):
                info[key] = re.sub(r"---supervisor-\w+\.log", "---X.log",
                                   info[key].replace(str(server.dir), "DIR"))
            info["command"] = info["command"].replace(str(server.dir), "DIR")
        return value
    infos = same(pair, "supervisor.getAllConfigInfo", masker=masker)
    by_name = {i["name"]: i for i in infos}
    assert by_name["redirected"]["stderr_logfile"] == "none"
    assert by_name["steady"]["inuse"] is True and by_name["steady"]["uid"] == "none"


# -- logs ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("chatty", 0, 0), ("chatty", 0, 3), ("chatty", 4, 100), ("chatty", -4, 0), ("chatty", -100, 0),
    ("chatty", -4, 2), ("chatty", 0, -1), ("chatty", 100, 0), ("nosuch", 0, 0), ("grp:*", 0, 0),
    ("redirected", 0, 0),
])
@pytest.mark.parametrize("method", ["supervisor.readProcessStdoutLog",
                                    "supervisor.readProcessStderrLog",
                                    "supervisor.readProcessLog"])
def test_read_process_log(pair, method, args):
    same(pair, method, *args)


@pytest.mark.parametrize("args", [
    ("chatty", 0, 100), ("chatty", 0, 3), ("chatty", 5, 2), ("chatty", 100, 10),
    ("chatty", -5, 3), ("chatty", 0, 0), ("nosuch", 0, 10), ("redirected", 0, 10),
])
@pytest.mark.parametrize("method", ["supervisor.tailProcessStdoutLog",
                                    "supervisor.tailProcessStderrLog",
                                    "supervisor.tailProcessLog"])
def test_tail_process_log(pair, method, args):
    same(pair, method, *args)


def test_log_values(pair):
    rpc = pair.agent.rpc().supervisor
    assert rpc.readProcessStdoutLog("chatty", 0, 0) == "out-line\n"
    assert rpc.readProcessStderrLog("chatty", -5, 0) == "line\n"
    assert rpc.readProcessStdoutLog("redirected", 0, 0) == "both\n"
    assert rpc.tailProcessStdoutLog("chatty", 0, 3) == ["ne\n", 9, True]
    assert rpc.tailProcessStderrLog("redirected", 0, 10) == ["", 0, False]


def test_read_main_log(pair):
    for args in ((0, 5), (-5, 0), (-5, 2), (0, -1), (10**9, 0)):
        stock, agent = both(pair, "supervisor.readLog", *args)
        assert type(agent) is type(stock) and (agent[:2] if isinstance(agent, tuple) else 1) == \
            (stock[:2] if isinstance(stock, tuple) else 1)
    log = (pair.agent.dir / "main.log").read_text()
    assert pair.agent.rpc().supervisor.readLog(0, 10) == log[:10]
    assert pair.agent.rpc().supervisor.readMainLog(0, 10) == log[:10]


def test_log_with_bytes_xml_cannot_carry(pair):
    """ANSI colours and NULs in a log must not break the response (stock fails here)."""
    rpc = pair.agent.rpc().supervisor
    pair.for_each(lambda s: s.rpc().supervisor.startProcess("manual"))
    pair.for_each(lambda s: s.rpc().supervisor.stopProcess("manual"))
    path = rpc.getProcessInfo("manual")["stdout_logfile"]
    with open(path, "ab") as f:
        f.write(b"\x1b[31mred\x1b[0m \x00 \xff\n")
    assert rpc.readProcessStdoutLog("manual", 0, 0) == "\ufffd[31mred\ufffd[0m \ufffd \ufffd\n"
    assert rpc.tailProcessStdoutLog("manual", 0, 100)[0].endswith("\ufffd\n")
    assert rpc.clearProcessLogs("manual")


def test_clear_logs(pair):
    assert same(pair, "supervisor.clearProcessLogs", "chatty") is True
    assert same(pair, "supervisor.readProcessStdoutLog", "chatty", 0, 0) == ""
    assert same(pair, "supervisor.clearProcessLog", "chatty") is True
    assert same(pair, "supervisor.clearProcessLogs", "nosuch")[:2] == ("fault", 10)
    assert same(pair, "supervisor.clearProcessLogs", "grp:*")[:2] == ("fault", 10)
    results = pair.agent.rpc().supervisor.clearAllProcessLogs()
    assert {r["status"] for r in results} == {80} and {r["description"] for r in results} == {"OK"}
    assert len(results) == 12


def test_clear_main_log(pair):
    rpc = pair.agent.rpc().supervisor
    assert same(pair, "supervisor.clearLog") is True
    assert "reopening log file" not in (pair.agent.dir / "main.log").read_text()
    pair.for_each(lambda s: s.rpc().supervisor.startProcess("manual"))
    pair.for_each(lambda s: s.rpc().supervisor.stopProcess("manual"))
    assert "spawned: 'manual'" in rpc.readLog(0, 0)


# -- starting, stopping, signalling ------------------------------------------------------------------

def test_start_stop_faults_match_stock(pair):
    cases = [
        ("supervisor.startProcess", "nosuch"), ("supervisor.startProcess", "steady"),
        ("supervisor.startProcess", "missing"), ("supervisor.startProcess", "noexec"),
        ("supervisor.startProcess", "crasher"), ("supervisor.stopProcess", "manual"),
        ("supervisor.stopProcess", "nosuch"), ("supervisor.startProcessGroup", "nosuch"),
        ("supervisor.stopProcessGroup", "nosuch"), ("supervisor.signalProcess", "steady", "BOGUS"),
        ("supervisor.signalProcess", "manual", "HUP"), ("supervisor.signalProcess", "nosuch", "HUP"),
        ("supervisor.signalProcessGroup", "nosuch", "HUP"),
    ]
    codes = [same(pair, *case)[1] for case in cases]
    assert codes == [10, 60, 20, 21, 50, 70, 10, 10, 10, 11, 70, 10, 10]
    pair.for_each(lambda s: s.wait_state("crasher", "FATAL"))


def test_start_and_stop_values(pair):
    assert same(pair, "supervisor.startProcess", "manual") is True
    assert same(pair, "supervisor.getProcessInfo", "manual", masker=mask_info)["statename"] == "RUNNING"
    assert same(pair, "supervisor.stopProcess", "manual") is True
    assert same(pair, "supervisor.startProcess", "manual", False) is True
    assert same(pair, "supervisor.stopProcess", "manual", False) is True
    pair.for_each(lambda s: s.wait_state("manual", "STOPPED"))


def by_name(value, server):
    """Group results sorted: stock lists them in the order its children happened to be reaped."""
    return sorted(value, key=lambda r: r["name"]) if isinstance(value, list) else value


def test_group_operations_return_result_structs(pair):
    results = same(pair, "supervisor.stopProcessGroup", "grp", masker=by_name)
    assert [r["name"] for r in results] == ["g1", "g2"]
    assert {(r["group"], r["status"], r["description"]) for r in results} == {("grp", 80, "OK")}
    assert same(pair, "supervisor.stopProcessGroup", "grp") == []
    assert same(pair, "supervisor.stopProcess", "grp:*") == []
    results = same(pair, "supervisor.startProcess", "grp:*", masker=by_name)
    assert [r["name"] for r in results] == ["g1", "g2"]
    assert same(pair, "supervisor.startProcessGroup", "grp", True) == []
    signalled = same(pair, "supervisor.signalProcessGroup", "grp", "0")
    assert [r["name"] for r in signalled] == ["g2", "g1"]
    assert same(pair, "supervisor.signalProcess", "grp:*", "BOGUS") == [
        {"name": "g2", "group": "grp", "status": 11, "description": "BAD_SIGNAL: BOGUS"},
        {"name": "g1", "group": "grp", "status": 11, "description": "BAD_SIGNAL: BOGUS"}]


def test_all_operations(pair):
    # slowstart would hold startAllProcesses for its 30 startsecs
    assert pair.agent.rpc().supervisor.removeProcessGroup("slowstart")
    results = pair.agent.rpc().supervisor.signalAllProcesses("0")
    assert len(results) == len(RUNNING)
    assert pair.agent.rpc().supervisor.signalAllProcesses(0) == results
    stopped = pair.agent.rpc().supervisor.stopAllProcesses()
    assert sorted(r["name"] for r in stopped) == sorted(n.split(":")[-1] for n in RUNNING)
    started = pair.agent.rpc().supervisor.startAllProcesses()
    by_name = {r["name"]: (r["status"], r["description"]) for r in started}
    assert by_name["crasher"] == (50, "SPAWN_ERROR: crasher")
    assert by_name["missing"] == (20, "NO_FILE: can't find command '/nonexistent/binary'")
    assert by_name["manual"] == (80, "OK")
    pair.agent.wait_state("crasher", "FATAL")
    pair.agent.rpc().supervisor.stopProcess("manual")
    assert pair.agent.rpc().supervisor.addProcessGroup("slowstart")


def test_abnormal_termination(pair):
    """A process stopped while a client waits for it to start: ABNORMAL_TERMINATION."""
    for server in (pair.stock, pair.agent):
        outcome = {}

        def start(server=server, outcome=outcome):
            outcome["value"] = call(server, "supervisor.startProcess", "slowstart")

        thread = threading.Thread(target=start)
        thread.start()
        server.wait_state("slowstart", "STARTING")
        assert server.rpc().supervisor.stopProcess("slowstart") is True
        thread.join(30)
        assert outcome["value"] == ("fault", 40, "ABNORMAL_TERMINATION: slowstart")


def test_signal_values(pair):
    assert same(pair, "supervisor.signalProcess", "steady", "0") is True
    assert same(pair, "supervisor.signalProcess", "steady", 0) is True
    assert same(pair, "supervisor.signalProcess", "steady", "sig0")[:2] == ("fault", 11)


# -- stdin and remote communication ---------------------------------------------------------------

def test_send_process_stdin(pair):
    rpc = pair.agent.rpc().supervisor
    assert rpc.sendProcessStdin("echo", "hello\n") is True
    assert rpc.sendProcessStdin("echo", xmlrpc.client.Binary(b"bytes\n")) is True
    wait_for(lambda: rpc.readProcessStdoutLog("echo", 0, 0) == "hello\nbytes\n", 5, "the echo")
    assert same(pair, "supervisor.sendProcessStdin", "echo", "x\n") is True
    assert same(pair, "supervisor.sendProcessStdin", "manual", "x") == ("fault", 70, "NOT_RUNNING: manual")
    assert same(pair, "supervisor.sendProcessStdin", "nosuch", "x")[:2] == ("fault", 10)
    assert same(pair, "supervisor.sendProcessStdin", "echo", 5) == ("fault", 2, "INCORRECT_PARAMETERS: 5")
    # stock queues the first write and only learns of the closed pipe when flushing it; the
    # agent writes at once and says so on the first call already
    assert call(pair.agent, "supervisor.sendProcessStdin", "deaf", "x") == ("fault", 20, "NO_FILE: deaf")
    call(pair.stock, "supervisor.sendProcessStdin", "deaf", "x")
    wait_for(lambda: call(pair.stock, "supervisor.sendProcessStdin", "deaf", "x") != True, 5, "EPIPE")
    assert same(pair, "supervisor.sendProcessStdin", "deaf", "x") == ("fault", 20, "NO_FILE: deaf")


def test_send_remote_comm_event(pair):
    assert same(pair, "supervisor.sendRemoteCommEvent", "type", "data") is True


# -- configuration ---------------------------------------------------------------------------------

def test_reload_add_remove_faults(pair):
    assert same(pair, "supervisor.reloadConfig") == [[[], [], []]]
    assert same(pair, "supervisor.addProcessGroup", "steady") == ("fault", 90, "ALREADY_ADDED: steady")
    assert same(pair, "supervisor.addProcessGroup", "nosuch") == ("fault", 10, "BAD_NAME: nosuch")
    assert same(pair, "supervisor.removeProcessGroup", "steady") == ("fault", 91, "STILL_RUNNING: steady")
    assert same(pair, "supervisor.removeProcessGroup", "nosuch") == ("fault", 10, "BAD_NAME: nosuch")
    assert same(pair, "supervisor.removeProcessGroup", "manual") is True
    assert same(pair, "supervisor.getProcessInfo", "manual")[:2] == ("fault", 10)
    assert same(pair, "supervisor.addProcessGroup", "manual") is True
    assert same(pair, "supervisor.getProcessInfo", "manual", masker=mask_info)["statename"] == "STOPPED"


def test_reload_config_refuses_a_bad_file(pair):
    config = pair.agent.config
    good = config.read_text()
    config.write_text(good + "\n[program:broken]\n")
    try:
        code, text = call(pair.agent, "supervisor.reloadConfig")[1:]
        assert code == 92 and text.startswith("CANT_REREAD: ") and "broken" in text
    finally:
        config.write_text(good)
    assert call(pair.agent, "supervisor.reloadConfig") == [[[], [], []]]


# -- multicall ---------------------------------------------------------------------------------------

def test_multicall_matches_stock(pair):
    calls = [
        {"methodName": "supervisor.getAPIVersion", "params": []},
        {"methodName": "supervisor.getProcessInfo", "params": ["nosuch"]},
        {"methodName": "supervisor.stopProcess", "params": ["manual"]},
        {"params": []},
        {"methodName": "system.multicall", "params": [[]]},
        {"methodName": "supervisor.nosuch"},
        {"methodName": "supervisor.getState", "params": [1, 2]},
        {"methodName": "supervisor.startProcess", "params": ["manual"]},
        {"methodName": "supervisor.getState", "params": []},
    ]
    results = same(pair, "system.multicall", calls)
    assert results.pop() == {"statecode": 1, "statename": "RUNNING"}
    assert results == [
        "3.0",
        {"faultCode": 10, "faultString": "BAD_NAME: nosuch"},
        {"faultCode": 70, "faultString": "NOT_RUNNING: manual"},
        {"faultCode": 2, "faultString": "INCORRECT_PARAMETERS: No methodName"},
        {"faultCode": 2, "faultString": "INCORRECT_PARAMETERS: Recursive system.multicall forbidden"},
        {"faultCode": 1, "faultString": "UNKNOWN_METHOD"},
        {"faultCode": 2, "faultString": "INCORRECT_PARAMETERS"},
        True,
    ]


# -- shutdown and restart ----------------------------------------------------------------------------

def test_restart_then_shutdown(pair):
    rpc = pair.agent.rpc().supervisor
    old = rpc.getProcessInfo("steady")["pid"]
    assert rpc.restart() is True
    pair.agent.wait_state("steady", "RUNNING", timeout=30)
    rpc = pair.agent.rpc().supervisor  # the restart closed the old connection
    assert rpc.getProcessInfo("steady")["pid"] != old
    assert rpc.shutdown() is True
    faults = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            rpc.getState()
        except xmlrpc.client.Fault as fault:
            faults.add((fault.faultCode, fault.faultString))
        except OSError:
            break
    assert faults <= {(6, "SHUTDOWN_STATE")}
    assert pair.agent.daemon.proc.wait(30) == 0
