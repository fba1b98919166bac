"""Re-exec of the agent in place (fleetvisor.reexec): every program keeps running, unwatched
for a moment, and the new agent carries on as if nothing happened."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from supervisor.xmlrpc import SupervisorTransport

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc
from tests.support import free_port, pid_alive, wait_for

from .harness import AGENT_HEAD, Daemon, write_config

PROGRAMS = Path(__file__).parent / "programs"
LISTENERS = Path(__file__).parent / "listeners"
CTL = str(Path(sys.executable).parent / "supervisorctl")
WRITERS = 4
SLEEPERS = 94  # with the writers, the victim and the listener: 100 programs

CONFIG = AGENT_HEAD + f"""
[inet_http_server]
port=127.0.0.1:{{http_port}}

[fleetvisor]
node=n1
grpc_listen=127.0.0.1:{{grpc_port}}
state_dir=%(here)s/state

[program:writer]
command={sys.executable} {PROGRAMS / "fast_numbered.py"}
process_name=writer_%(process_num)02d
numprocs={WRITERS}
stdout_logfile=%(here)s/writer_%(process_num)02d.log
stdout_logfile_maxbytes=0

[program:sleeper]
command=sleep 100090
process_name=sleeper_%(process_num)02d
numprocs={SLEEPERS}
startsecs=0

[program:victim]
command=sh -c 'echo $$ > %(here)s/victim.pid; exec sleep 100091'
startsecs=0
autorestart=true

[eventlistener:recorder]
command={sys.executable} {LISTENERS / "recorder.py"} %(here)s/events.jsonl
events=PROCESS_STATE
buffer_size=1000
"""

# Run as the new agent: on the real handover (not the dry run) it first kills the victim, which
# so exits while no agent watches it; then, while no gRPC server runs, it connects to the gRPC
# port (the connection must be queued, not refused) and writes how that went; then it becomes
# the agent. (Python, not sh: a shell that runs a command waits for it, and would reap the victim too.)
WRAPPER = """#!/bin/sh
exec {python} -c 'import os, socket, sys
if "--resume" in sys.argv:
    os.kill(int(open("{dir}/victim.pid").read()), 15)
    try:
        socket.create_connection(("127.0.0.1", {grpc_port}), timeout=5).close()
        outcome = "connected"
    except OSError as exc:
        outcome = str(exc)
    open("{dir}/grpc-during-exec", "w").write(outcome)
os.execv(sys.executable, [sys.executable, "-m", "fleetvisor.agent", *sys.argv[1:]])' "$@"
"""


def write_wrapper(directory: Path, body: str) -> Path:
    path = directory / "new-agent"
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def ctl(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CTL, "-c", str(config), *args], capture_output=True, text=True, timeout=60)


def status_pids(config: Path) -> dict[str, int]:
    """name -> pid of the RUNNING processes, as the stock supervisorctl shows them."""
    out = ctl(config, "status").stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+RUNNING\s+pid (\d+),", out, re.M)}


def numbers_in(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def no_strays():
    yield
    for command in ("sleep 100090", "sleep 100091", "sleep 100092"):
        out = subprocess.run(["pgrep", "-f", f"^{command}$"], capture_output=True, text=True).stdout
        for pid in out.split():
            os.kill(int(pid), signal.SIGKILL)


class Hammer:
    """XML-RPC calls on the TCP port, one connection each, for as long as it runs: a refused
    connection, or one closed without an answer, is what a re-exec must never cause."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/RPC2"
        self.refused = 0
        self.failed = 0
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                xmlrpc.client.ServerProxy(self.url).supervisor.getState()
                self.answered += 1
            except ConnectionRefusedError:
                self.refused += 1
            except (OSError, xmlrpc.client.ProtocolError):
                self.failed += 1  # a connection the old agent accepted and closed without an answer

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class GrpcHammer:
    """GetInfo calls, each on a new channel (a new connection), for as long as it runs: across a
    re-exec every one must be answered, none refused (UNAVAILABLE) nor cut."""

    def __init__(self, port: int) -> None:
        self.address = f"127.0.0.1:{port}"
        self.answered = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with grpc.insecure_channel(self.address) as channel:
                try:
                    pb_grpc.AgentServiceStub(channel).GetInfo(pb.GetInfoRequest(), timeout=20)
                    self.answered += 1
                except grpc.RpcError as exc:
                    self.failed.append(f"{exc.code().name}: {exc.details()}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _collect(stream, into: queue.Queue) -> None:
    try:
        for event in stream:
            into.put(event)
    except grpc.RpcError:
        pass


def test_reexec_keeps_every_program_its_output_and_the_event_stream(tmp_path):
    http_port, grpc_port = free_port(), free_port()
    config = write_config(tmp_path, CONFIG.replace("{http_port}", str(http_port))
                          .replace("{grpc_port}", str(grpc_port)))
    wrapper = write_wrapper(tmp_path, WRAPPER.format(dir=tmp_path, python=sys.executable, grpc_port=grpc_port))
    agent = Daemon(config, extra_args=("--reexec-command", str(wrapper)))
    channel = None
    try:
        agent.wait_line(r"gRPC AgentService listening on")
        wait_for(lambda: len(status_pids(config)) == 100, 60, "100 programs RUNNING")
        assert ctl(config, "stop", "sleeper:sleeper_00").returncode == 0  # stopped by hand: stays so
        before = status_pids(config)
        victim = before.pop("victim")
        agent_pid = agent.proc.pid

        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = pb_grpc.AgentServiceStub(channel)
        events: queue.Queue = queue.Queue()
        stream = stub.WatchEvents(pb.WatchEventsRequest())
        threading.Thread(target=_collect, args=(stream, events), daemon=True).start()
        snapshot = events.get(timeout=10)
        assert snapshot.WhichOneof("kind") == "snapshot"
        stream.cancel()

        hammer, grpc_hammer = Hammer(http_port), GrpcHammer(grpc_port)
        wait_for(lambda: hammer.answered > 0 and grpc_hammer.answered > 0, 10, "the hammers' first answers")
        rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{http_port}/RPC2")
        assert rpc.fleetvisor.reexec() is True
        agent.wait_line(r"re-exec: took over 99 running processes with their pids", 60)
        answered, grpc_answered = hammer.answered, grpc_hammer.answered
        wait_for(lambda: hammer.answered > answered + 5 and grpc_hammer.answered > grpc_answered + 5, 20,
                 "answers from the new agent")
        hammer.stop()
        grpc_hammer.stop()
        assert hammer.refused == 0 and hammer.failed == 0
        assert grpc_hammer.failed == []
        # a connection made while neither agent served gRPC was queued, then relayed to the new one
        assert (tmp_path / "grpc-during-exec").read_text() == "connected"
        agent.wait_line(r"re-exec: [1-9]\d* gRPC connection\(s\) made during the handover relayed", 10)

        # the same agent process, every program with its pid; the victim exited meanwhile and
        # was handled as an exit: logged, and restarted per autorestart
        assert agent.proc.poll() is None and agent.proc.pid == agent_pid
        assert rpc.supervisor.getPID() == agent_pid
        agent.wait_line(r"exited: victim \(terminated by SIGTERM; not expected\)", 20)
        new_victim = int(agent.wait_line(r"spawned: 'victim' with pid (\d+)", 20, count=2)[-1].group(1))
        assert new_victim != victim and not pid_alive(victim)
        after = wait_for(lambda: (s := status_pids(config)) and "victim" in s and s, 20, "victim running")
        assert after.pop("victim") == new_victim
        assert after == before
        assert "sleeper:sleeper_00" not in after
        assert "STOPPED" in ctl(config, "status", "sleeper:sleeper_00").stdout

        # the stream resumes from the journal: no snapshot, the next sequence first
        resumed: queue.Queue = queue.Queue()
        stream2 = stub.WatchEvents(pb.WatchEventsRequest(after_sequence=snapshot.sequence,
                                                         agent_run_id=snapshot.agent_run_id))
        threading.Thread(target=_collect, args=(stream2, resumed), daemon=True).start()
        first = resumed.get(timeout=20)
        assert first.WhichOneof("kind") == "process_state"
        assert first.sequence == snapshot.sequence + 1 and first.agent_run_id == snapshot.agent_run_id
        assert first.process_state.process.name == "victim"
        stream2.cancel()

        # the listener went on: every event once, serials continuing, the victim's exit among them
        def recorded() -> list[dict]:
            path = tmp_path / "events.jsonl"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        wait_for(lambda: any(r["headers"]["eventname"] == "PROCESS_STATE_RUNNING"
                             and "processname:victim" in r["payload"]
                             and f"pid:{new_victim}" in r["payload"] for r in recorded()), 20, "victim's RUNNING event")
        records = recorded()
        assert {r["pid"] for r in records} == {after["recorder"]}
        serials = [int(r["headers"]["serial"]) for r in records]
        pool_serials = [int(r["headers"]["poolserial"]) for r in records]
        assert serials == sorted(set(serials))
        assert pool_serials == list(range(pool_serials[0], pool_serials[0] + len(pool_serials)))
        assert any(r["headers"]["eventname"] == "PROCESS_STATE_EXITED" and "processname:victim" in r["payload"]
                   for r in records)

        # not one byte lost or written twice: every writer's numbers run on without a gap
        assert ctl(config, "stop", "writer:*").returncode == 0
        for n in range(WRITERS):
            numbers = numbers_in(tmp_path / f"writer_{n:02d}.log")
            assert numbers == list(range(len(numbers))), f"writer_{n:02d}: a gap or a repeat"
        agent.assert_no_failures()
    finally:
        if channel is not None:
            channel.close()
        agent.stop()


FAILING = AGENT_HEAD + """
[program:sleeper]
command=sleep 100092
process_name=sleeper_%(process_num)02d
numprocs=3
startsecs=0
"""


@contextlib.contextmanager
def sleepers(tmp_path: Path, body: str = FAILING, wrapper: Path | None = None,
             count: int = 3) -> Iterator[tuple[Path, Daemon, dict[str, int]]]:
    """An agent on `body` (three sleepers and what is added), `wrapper` as its re-exec command:
    its config, the daemon and the pids of its RUNNING processes, once all `count` run."""
    config = write_config(tmp_path, body)
    agent = Daemon(config, extra_args=("--reexec-command", str(wrapper)) if wrapper is not None else ())
    try:
        yield config, agent, wait_for(lambda: len(s := status_pids(config)) == count and s, 20, f"{count} RUNNING")
    finally:
        agent.stop()


def _unix_rpc(config: Path) -> xmlrpc.client.ServerProxy:
    transport = SupervisorTransport(None, None, f"unix://{config.parent / 'supervisor.sock'}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def _reexec(config: Path) -> object:
    return _unix_rpc(config).fleetvisor.reexec()


def _reexec_fault(config: Path) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as info:
        _reexec(config)
    return info.value


CHECKED = FAILING + """
[program:checked]
command=sleep 100092
startsecs=0
healthcheck=exec:test ! -e %(here)s/sick
healthcheck_interval=0.2
healthcheck_retries=3
"""


def test_health_verdicts_carry_over_the_reexec(tmp_path):
    """A healthy process is healthy at once in the new agent (no unknown in between, no second
    'healthy' line or event); failures in a row are counted on from where they were."""
    with sleepers(tmp_path, body=CHECKED, count=4) as (config, agent, _):
        agent.wait_line(r"INFO healthy: checked \(health check passed\)")
        assert _reexec(config) is True
        agent.wait_line(r"re-exec: took over 4 running processes with their pids", 30)
        (tmp_path / "sick").touch()
        agent.wait_line(r"WARN unhealthy: checked \(health check failed 3 times in a row: ", 20)
        assert len([m for m in agent.messages() if "INFO healthy: checked" in m]) == 1
        assert _reexec(config) is True
        agent.wait_line(r"re-exec: took over 4 running processes with their pids", 30, count=2)
        (tmp_path / "sick").unlink()
        agent.wait_line(r"INFO healthy: checked \(health check passed\)", 20, count=2)
        assert len([m for m in agent.messages() if "WARN unhealthy: checked" in m]) == 1
        agent.assert_no_failures()


def test_a_new_agent_that_fails_leaves_everything_as_it_was(tmp_path):
    wrapper = write_wrapper(tmp_path, "#!/bin/sh\necho 'broken install' >&2\nexit 1\n")
    with sleepers(tmp_path, wrapper=wrapper) as (config, agent, before):
        fault = _reexec_fault(config)
        assert fault.faultCode == 30 and "re-exec refused" in fault.faultString
        line = agent.wait_line(r"ERRO re-exec refused: .*new-agent failed its dry run \(exit status 1\): "
                               r"broken install")
        assert len(line) == 1
        assert status_pids(config) == before and ctl(config, "status").returncode == 0
        assert agent.proc.poll() is None
        agent.assert_no_failures()


def test_a_config_that_changed_or_has_fcgi_programs_is_refused(tmp_path):
    with sleepers(tmp_path) as (config, _, before):
        config.write_text(config.read_text() + "\n[program:extra]\ncommand=sleep 100092\n")
        fault = _reexec_fault(config)
        assert "differs from the running config (groups extra)" in fault.faultString
        config.write_text(FAILING.lstrip() + "\n[fcgi-program:fcgi]\ncommand=sleep 100092\n"
                          "socket=unix://%(here)s/fcgi.sock\nstartsecs=0\n")
        assert ctl(config, "update").returncode == 0
        fault = _reexec_fault(config)
        assert "group 'fcgi' is an fcgi-program, which a re-exec does not carry yet" in fault.faultString
        assert {k: v for k, v in status_pids(config).items() if k.startswith("sleeper")} == before


def test_sockets_are_served_by_the_same_process_without_a_new_bind(tmp_path):
    """The unix socket file is the one the first agent made (same inode): handed over, not re-bound."""
    with sleepers(tmp_path) as (config, agent, _):
        inode = os.stat(tmp_path / "supervisor.sock").st_ino
        assert _reexec(config) is True
        agent.wait_line(r"re-exec: took over 3 running processes", 60)
        assert os.stat(tmp_path / "supervisor.sock").st_ino == inode
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(str(tmp_path / "supervisor.sock"))
        probe.close()
        assert ctl(config, "status").returncode == 0
    assert not (tmp_path / "supervisor.sock").exists()  # the last agent still removes its own file


GRPC_AGENT = FAILING + """
[fleetvisor]
node=n1
grpc_listen=127.0.0.1:{grpc_port}
state_dir=%(here)s/state
"""
FLEETCTL = [sys.executable, "-m", "fleetvisor.cli.main"]


def fleetctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEETCTL, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml"})


def test_fleetctl_agent_reexec_over_grpc(tmp_path):
    port = free_port()
    config = write_config(tmp_path, GRPC_AGENT.replace("{grpc_port}", str(port)))
    agent = Daemon(config)
    try:
        agent.wait_line(r"gRPC AgentService listening on")
        before = wait_for(lambda: len(s := status_pids(config)) == 3 and s, 20, "3 RUNNING")
        node = f"127.0.0.1:{port}"

        checked = fleetctl("--node", node, "agent", "reexec", "--dry-run")
        assert checked.returncode == 0, checked.stderr
        assert f"{node}: the agent can be re-exec'd (pid {agent.proc.pid})" in checked.stdout
        assert not any("handing" in line for line in agent.messages())

        done = fleetctl("--node", node, "-o", "json", "agent", "reexec")
        assert done.returncode == 0, done.stderr
        assert f'"pid": {agent.proc.pid}' in done.stdout
        agent.wait_line(r"re-exec: handing 3 running processes over to .* \(asked over grpc", 30)
        agent.wait_line(r"re-exec: took over 3 running processes", 60)
        agent.wait_line(r"gRPC AgentService listening on", 30, count=2)
        assert status_pids(config) == before
        wait_for(lambda: fleetctl("--node", node, "status").returncode == 0, 30, "fleetctl status again")

        fleet_mode = fleetctl("--controller", "127.0.0.1:1", "agent", "reexec")
        assert fleet_mode.returncode == 2 and "runs on one node: pass --node" in fleet_mode.stderr
        assert "Traceback" not in fleet_mode.stderr
        agent.assert_no_failures()
    finally:
        agent.stop()


SH_WRAPPER = """#!/bin/sh
case " $* " in *" --resume "*) kill "$(cat {dir}/victim.pid)"; sleep 0.2 ;; esac
exec {python} -m fleetvisor.agent "$@"
"""


def test_a_child_reaped_by_someone_else_during_the_exec_counts_as_an_unknown_exit(tmp_path):
    """A shell run in between waits for its own commands and reaps whatever child ends: the
    victim's status is lost, the new agent says so and restarts it; the others are adopted."""
    victim = """
[program:victim]
command=sh -c 'echo $$ > %(here)s/victim.pid; exec sleep 100092'
startsecs=0
autorestart=unexpected
"""
    wrapper = write_wrapper(tmp_path, SH_WRAPPER.format(dir=tmp_path, python=sys.executable))
    with sleepers(tmp_path, FAILING + victim, wrapper, count=4) as (config, agent, before):
        assert _reexec(config) is True
        agent.wait_line(r"re-exec: took over 3 running processes", 60)
        agent.wait_line(rf"WARN re-exec: victim:victim \(pid {before['victim']}\) was reaped by another process "
                        r"during the handover; its exit status is lost")
        agent.wait_line(r"exited: victim \(unknown termination cause 0xffff; not expected\)")
        agent.wait_line(r"spawned: 'victim' with pid", count=2)
        after = wait_for(lambda: len(s := status_pids(config)) == 4 and s, 20, "4 RUNNING again")
        assert after.pop("victim") != before.pop("victim") and after == before


# Passes the dry run, then starts the real handover with another config, which lacks a program
# the agent runs: the new agent cannot adopt it and must go back to the previous command.
SWAPPING_WRAPPER = """#!/bin/sh
exec {python} -c 'import os, sys
args = sys.argv[1:]
if "--resume" in args:
    args[args.index("-c") + 1] = "{other}"
os.execv(sys.executable, [sys.executable, "-m", "fleetvisor.agent", *args])' "$@"
"""


def test_a_new_agent_that_cannot_adopt_goes_back_and_nothing_is_lost(tmp_path):
    other = write_config(tmp_path, FAILING.replace("numprocs=3", "numprocs=2"), name="other.conf")
    wrapper = write_wrapper(tmp_path, SWAPPING_WRAPPER.format(python=sys.executable, other=other))
    with sleepers(tmp_path, wrapper=wrapper) as (config, agent, before):
        assert _reexec(config) is True
        agent.wait_line(rf"CRIT re-exec failed: sleeper:sleeper_02 \(pid {before['sleeper:sleeper_02']}\) is not in "
                        r"the config any more; going back to .* -m fleetvisor.agent", 60)
        agent.wait_line(r"re-exec: took over 3 running processes", 60)
        assert agent.proc.poll() is None
        assert status_pids(config) == before and ctl(config, "status").returncode == 0
        assert ctl(config, "restart", "sleeper:sleeper_02").returncode == 0  # managed as before
        agent.assert_no_failures()


def test_an_unreadable_handoff_file_is_one_line_and_an_ordinary_start(tmp_path):
    config = write_config(tmp_path, FAILING)
    (tmp_path / "bad.json").write_text('{"version": 99}')
    agent = Daemon(config, extra_args=("--resume", str(tmp_path / "bad.json")))
    try:
        agent.wait_line(r"CRIT re-exec failed: cannot resume: the handoff file has format version 99; this agent "
                        r"reads up to 2; starting afresh")
        wait_for(lambda: len(status_pids(config)) == 3, 20, "3 RUNNING")
        assert not (tmp_path / "bad.json").exists()  # read once, never again
        agent.assert_no_failures()
    finally:
        agent.stop()


SLOW_WRAPPER = """#!/bin/sh
exec {python} -c 'import os, sys, time
if "--resume" in sys.argv:
    open("{dir}/exec-started", "w").close()
    time.sleep(1)
os.execv(sys.executable, [sys.executable, "-m", "fleetvisor.agent", *sys.argv[1:]])' "$@"
"""


def test_a_sigterm_during_the_handover_is_carried_out_by_the_new_agent(tmp_path):
    wrapper = write_wrapper(tmp_path, SLOW_WRAPPER.format(python=sys.executable, dir=tmp_path))
    with sleepers(tmp_path, wrapper=wrapper) as (config, agent, before):
        assert _reexec(config) is True
        wait_for(lambda: (tmp_path / "exec-started").exists(), 30, "the exec under way")
        agent.signal(signal.SIGTERM)  # not the default action (death): held, then acted on
        agent.wait_line(r"re-exec: took over 3 running processes", 60)
        agent.wait_line(r"received SIGTERM indicating exit request", 30)
        assert agent.proc.wait(30) == 0
        assert not any(pid_alive(pid) for pid in before.values())
        agent.assert_no_failures()
