"""depends_on with real processes (issue 16): a program starts only once its dependencies are
ready (RUNNING, or healthy where they have a health check), at daemon start and after an update;
a FATAL dependency leaves its dependents STOPPED with a spawnerr naming it; a cycle stops the
agent at load while stock supervisord starts the same file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import textwrap
from pathlib import Path
from xmlrpc.client import ServerProxy

from tests.support import free_port, wait_for

from .harness import AGENT, SUPERVISORD, Daemon, write_config

HEAD = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
[inet_http_server]
port=127.0.0.1:{port}
[supervisorctl]
serverurl=http://127.0.0.1:{port}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
"""

CHAIN = """
[program:web]
command=sleep 1000
startsecs=0
priority=1
depends_on=api
[program:api]
command=sleep 1000
startsecs=0
priority=2
depends_on=db
healthcheck=exec:test -e {ready}
healthcheck_interval=0.1
healthcheck_retries=1
[program:db]
command=sleep 1000
startsecs=1
priority=3
"""


def start(tmp_path: Path, daemons, programs: str) -> tuple[Daemon, ServerProxy, Path]:
    port = free_port()
    config = write_config(tmp_path, textwrap.dedent(HEAD.format(port=port)) + textwrap.dedent(programs))
    daemon, rpc = daemons(config), ServerProxy(f"http://127.0.0.1:{port}/RPC2")
    daemon.wait_line(r"RPC interface 'supervisor' initialized|supervisord started", timeout=20)
    return daemon, rpc, config


def index_of(daemon: Daemon, pattern: str) -> int:
    daemon.wait_line(pattern, timeout=20)
    return next(i for i, m in enumerate(daemon.messages()) if re.search(pattern, m))


def test_start_order_follows_dependencies_and_health_at_daemon_start(tmp_path, daemons):
    ready = tmp_path / "api-ready"
    daemon, rpc, _ = start(tmp_path, daemons, CHAIN.format(ready=ready))
    db_running = index_of(daemon, r"success: db entered RUNNING")
    api_spawned = index_of(daemon, r"spawned: 'api'")
    assert db_running < api_spawned  # web and api come first by priority, yet wait
    assert rpc.supervisor.getProcessInfo("web")["statename"] == "STOPPED"  # api is RUNNING, not healthy
    ready.touch()
    api_healthy = index_of(daemon, r"healthy: api \(health check passed\)")
    web_spawned = index_of(daemon, r"spawned: 'web'")
    assert api_healthy < web_spawned
    wait_for(lambda: rpc.supervisor.getProcessInfo("web")["statename"] == "RUNNING", 10, "web running")


def test_a_fatal_dependency_leaves_its_dependents_stopped_naming_it(tmp_path, daemons):
    daemon, rpc, _ = start(tmp_path, daemons, """
        [program:broken]
        command=/bin/false
        startsecs=1
        startretries=0
        [program:needy]
        command=sleep 1000
        startsecs=0
        depends_on=broken
        """)
    daemon.wait_line(r"gave up: broken entered FATAL state", timeout=20)
    daemon.wait_line(r"spawnerr: dependency broken is FATAL", timeout=10)
    info = rpc.supervisor.getProcessInfo("needy")
    assert (info["statename"], info["spawnerr"]) == ("STOPPED", "dependency broken is FATAL")
    assert info["description"] == "start held: dependency broken is FATAL"  # what supervisorctl status shows
    try:
        rpc.supervisor.startProcess("needy")
        raise AssertionError("a start with a FATAL dependency succeeded")
    except Exception as exc:  # the stock client's Fault
        assert "SPAWN_ERROR" in str(exc)
    assert "spawned: 'needy'" not in "\n".join(daemon.messages())


def test_a_dependent_added_by_update_waits_for_its_dependency(tmp_path, daemons):
    daemon, rpc, config = start(tmp_path, daemons, """
        [program:db]
        command=sleep 1000
        startsecs=0
        autostart=false
        """)
    config.write_text(config.read_text() + "[program:api]\ncommand=sleep 1000\nstartsecs=0\ndepends_on=db\n")
    result = subprocess.run([str(Path(SUPERVISORD[0]).with_name("supervisorctl")), "-c", str(config), "update"],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "api: added process group", result.stdout + result.stderr
    held = rpc.supervisor.getProcessInfo("api")
    assert (held["statename"], held["description"]) == ("STOPPED", "start held: dependency db is STOPPED")
    rpc.supervisor.startProcess("db")
    wait_for(lambda: rpc.supervisor.getProcessInfo("api")["statename"] == "RUNNING", 10, "api started after db")
    assert index_of(daemon, r"success: db entered RUNNING") < index_of(daemon, r"spawned: 'api'")


def test_a_cycle_stops_the_agent_and_stock_supervisord_starts_the_file(tmp_path, daemons):
    port = free_port()
    config = write_config(tmp_path, textwrap.dedent(HEAD.format(port=port)) + textwrap.dedent("""
        [program:a]
        command=sleep 1000
        depends_on=b
        [program:b]
        command=sleep 1000
        depends_on=a
        """))
    refused = subprocess.run([*AGENT, "-c", str(config), "-n"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "depends_on makes a cycle: a -> b -> a" in refused.stderr + refused.stdout
    stock = daemons(config, SUPERVISORD)
    stock.wait_line(r"success: a entered RUNNING", timeout=20)


def test_stops_run_in_reverse_dependency_order(tmp_path, daemons):
    """web depends on api, api on db; priorities say the opposite order. Both stop all and the
    daemon's own shutdown stop web, then api, then db."""
    ready = tmp_path / "api-ready"
    ready.touch()
    daemon, rpc, _ = start(tmp_path, daemons, CHAIN.format(ready=ready))  # priorities: db stops first
    wait_for(lambda: all(p["statename"] == "RUNNING" for p in rpc.supervisor.getAllProcessInfo()), 20, "all running")
    rpc.supervisor.stopAllProcesses()
    stopped = [index_of(daemon, rf"stopped: {name} ") for name in ("web", "api", "db")]
    assert stopped == sorted(stopped), daemon.messages()
    rpc.supervisor.startAllProcesses()
    wait_for(lambda: all(p["statename"] == "RUNNING" for p in rpc.supervisor.getAllProcessInfo()), 20, "running again")
    first = len(daemon.messages())
    daemon.stop()
    lines = daemon.messages()[first:]
    order = [next(i for i, m in enumerate(lines) if re.search(rf"stopped: {name} ", m)) for name in ("web", "api", "db")]
    assert order == sorted(order), lines


def index_after(daemon: Daemon, first: int, pattern: str) -> int:
    """The index of the first main-log message from `first` on that matches, once there is one."""
    def found() -> int | None:
        return next((first + i for i, m in enumerate(daemon.messages()[first:]) if re.search(pattern, m)), None)
    return wait_for(lambda: found() is not None, 20, pattern) and found()


def assert_chain_order(daemon: Daemon, first: int) -> None:
    assert index_after(daemon, first, r"success: db entered RUNNING") < index_after(daemon, first, r"spawned: 'api'")
    assert index_after(daemon, first, r"healthy: api \(health check passed\)") < \
        index_after(daemon, first, r"spawned: 'web'")


def test_start_all_and_reload_follow_dependencies(tmp_path, daemons):
    ready = tmp_path / "api-ready"
    ready.touch()
    daemon, rpc, _ = start(tmp_path, daemons, CHAIN.format(ready=ready))

    def all_in(state: str) -> bool:
        return all(p["statename"] == state for p in rpc.supervisor.getAllProcessInfo())
    wait_for(lambda: all_in("RUNNING"), 20, "all running")
    rpc.supervisor.stopAllProcesses()
    wait_for(lambda: all_in("STOPPED"), 20, "all stopped")
    first = len(daemon.messages())
    rpc.supervisor.startAllProcesses(False)
    assert_chain_order(daemon, first)
    wait_for(lambda: all_in("RUNNING"), 20, "all running after start all")

    first = len(daemon.messages())
    rpc.supervisor.restart()  # supervisorctl reload
    index_after(daemon, first, r"stopped: db ")
    assert_chain_order(daemon, first)


def test_an_autorestart_waits_for_its_dependency(tmp_path, daemons):
    daemon, rpc, _ = start(tmp_path, daemons, """
        [program:db]
        command=sleep 1000
        startsecs=0
        [program:worker]
        command=sleep 1000
        startsecs=0
        autorestart=true
        depends_on=db
        """)
    wait_for(lambda: all(p["statename"] == "RUNNING" for p in rpc.supervisor.getAllProcessInfo()), 20, "running")
    rpc.supervisor.stopProcess("db")
    first = len(daemon.messages())
    os.kill(rpc.supervisor.getProcessInfo("worker")["pid"], signal.SIGKILL)
    index_after(daemon, first, r"exited: worker \(terminated by SIGKILL; not expected\)")
    wait_for(lambda: rpc.supervisor.getProcessInfo("worker")["description"] == "start held: dependency db is STOPPED",
             10, "worker held, naming db")
    assert rpc.supervisor.getProcessInfo("worker")["statename"] == "EXITED"
    assert not any("spawned: 'worker'" in m for m in daemon.messages()[first:])
    rpc.supervisor.startProcess("db")
    assert index_after(daemon, first, r"success: db entered RUNNING") < index_after(daemon, first, r"spawned: 'worker'")
    wait_for(lambda: rpc.supervisor.getProcessInfo("worker")["statename"] == "RUNNING", 10, "worker back")


def test_a_group_stops_its_dependents_first(tmp_path, daemons):
    """Within one [group:x], stopping the group stops api before the db it depends on, though
    priority alone would stop db first."""
    daemon, rpc, _ = start(tmp_path, daemons, """
        [group:stack]
        programs=db,api
        [program:db]
        command=sleep 1000
        startsecs=0
        priority=900
        [program:api]
        command=sleep 1000
        startsecs=0
        priority=1
        depends_on=db
        """)
    wait_for(lambda: all(p["statename"] == "RUNNING" for p in rpc.supervisor.getAllProcessInfo()), 20, "running")
    first = len(daemon.messages())
    rpc.supervisor.stopProcessGroup("stack")
    assert index_after(daemon, first, r"stopped: api ") < index_after(daemon, first, r"stopped: db ")
