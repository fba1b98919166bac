"""The agent's gRPC face, driven with the generated client against a real agent."""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
import xmlrpc.client
from pathlib import Path

import grpc
import pytest
from supervisor.xmlrpc import SupervisorTransport

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc
from tests.support import free_port, wait_for

from .harness import AGENT, AGENT_HEAD, Daemon, write_config

BASE = AGENT_HEAD + """
[fleetvisor]
node=node-a
labels=role=web,zone=z1
grpc_listen=127.0.0.1:{port}
state_dir=%(here)s/state

[program:local]
command=sleep 1000
startsecs=0

[program:stubborn]
command=/bin/sh -c "trap '' TERM; exec sleep 1000"
startsecs=0
stopwaitsecs=2

[program:talker]
command=/bin/sh -c "echo first-line; while read line; do echo got-$line; done"
startsecs=0
stdout_logfile=%(here)s/talker.log

[group:web]
programs=w1,w2

[program:w1]
command=sleep 1000
startsecs=0

[program:w2]
command=sleep 1000
startsecs=0
"""


class Agent:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.config = write_config(directory, textwrap.dedent(BASE).replace("{port}", str(self.port)))
        self.daemon: Daemon | None = None

    def start(self) -> None:
        self.daemon = Daemon(self.config)
        self.daemon.wait_line(r"gRPC AgentService listening on")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.AgentServiceStub(self.channel)
        wait_for(lambda: all(p.statename == "RUNNING" for p in self.processes()), 10, "all RUNNING")

    def processes(self) -> list[pb.ProcessInfo]:
        return list(self.stub.ListProcesses(pb.ListProcessesRequest(), timeout=10).processes)

    def by_name(self) -> dict[str, pb.ProcessInfo]:
        return {p.namespec: p for p in self.processes()}

    def stop(self) -> None:
        self.channel.close()
        assert self.daemon is not None
        self.daemon.stop()


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    a = Agent(tmp_path_factory.mktemp("grpc"))
    a.start()
    yield a
    a.stop()


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_get_info(agent):
    info = agent.stub.GetInfo(pb.GetInfoRequest(), timeout=10)
    assert info.node == "node-a" and dict(info.labels) == {"role": "web", "zone": "z1"}
    assert info.supervisor_version == "4.3.0" and info.api_version == "3.0"
    assert info.state == pb.SUPERVISOR_RUNNING and info.pid == agent.daemon.proc.pid
    assert info.asyncio_tasks > 0  # at least the task serving this call


def test_list_processes_with_filters_and_bad_names(agent):
    names = [p.namespec for p in agent.processes()]
    assert names == ["local", "stubborn", "talker", "web:w1", "web:w2"]
    web = agent.stub.ListProcesses(pb.ListProcessesRequest(names=["web:*"]), timeout=10).processes
    assert [p.namespec for p in web] == ["web:w1", "web:w2"]
    one = agent.stub.ListProcesses(pb.ListProcessesRequest(names=["local"]), timeout=10).processes[0]
    assert one.statename == "RUNNING" and one.pid > 0 and one.description.startswith(f"pid {one.pid}, uptime")
    assert code_of(lambda: agent.stub.ListProcesses(pb.ListProcessesRequest(names=["nope"]), timeout=10)) \
        == grpc.StatusCode.NOT_FOUND


def test_stop_start_restart_with_results(agent):
    stopped = agent.stub.Stop(pb.ProcessCommand(names=["web:*"], wait=True), timeout=30)
    assert [(r.name, r.ok, r.state) for r in stopped.results] == [("web:w1", True, pb.STOPPED),
                                                                   ("web:w2", True, pb.STOPPED)]
    again = agent.stub.Stop(pb.ProcessCommand(names=["web:w1"], wait=True), timeout=30)
    assert [(r.ok, r.status) for r in again.results] == [(False, "NOT_RUNNING")]
    started = agent.stub.Start(pb.ProcessCommand(names=["web:w1", "web:w2"], wait=True), timeout=30)
    assert all(r.ok and r.state == pb.RUNNING for r in started.results)
    before = agent.by_name()["web:w1"].pid
    restarted = agent.stub.Restart(pb.ProcessCommand(names=["web:w1"], wait=True), timeout=30)
    assert restarted.results[0].ok and agent.by_name()["web:w1"].pid != before
    code = code_of(lambda: agent.stub.Start(pb.ProcessCommand(names=["web:w1", "ghost"]), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND  # checked before anything is done


def test_a_restart_whose_caller_goes_away_is_carried_out(agent):
    # stubborn ignores SIGTERM, so its stop takes stopwaitsecs; the caller gives up first.
    before = agent.by_name()["stubborn"].pid
    assert code_of(lambda: agent.stub.Restart(pb.ProcessCommand(names=["stubborn"], wait=True), timeout=0.5)) \
        == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: (p := agent.by_name()["stubborn"]).statename == "RUNNING" and p.pid != before, 15,
             "stubborn restarted all the same")


def test_signal_and_bad_signal(agent):
    reply = agent.stub.Signal(pb.SignalCommand(names=["local"], signal="CONT"), timeout=10)
    assert reply.results[0].ok
    assert code_of(lambda: agent.stub.Signal(pb.SignalCommand(names=["local"], signal="NOPE"), timeout=10)) \
        == grpc.StatusCode.INVALID_ARGUMENT


def _collect(stream, into: queue.Queue) -> None:
    try:
        for event in stream:
            into.put(event)
    except grpc.RpcError:
        pass


def test_watch_events_snapshot_then_changes_and_resume(agent):
    events: queue.Queue = queue.Queue()
    stream = agent.stub.WatchEvents(pb.WatchEventsRequest())
    threading.Thread(target=_collect, args=(stream, events), daemon=True).start()
    snapshot = events.get(timeout=10)
    assert snapshot.WhichOneof("kind") == "snapshot"
    assert {p.namespec for p in snapshot.snapshot.processes} >= {"local", "web:w1"}
    agent.stub.Stop(pb.ProcessCommand(names=["local"], wait=True), timeout=30)
    seen = []
    while not any(e.process_state.process.statename == "STOPPED" for e in seen):
        seen.append(events.get(timeout=10))
    states = [(e.process_state.process.name, e.process_state.process.statename) for e in seen]
    assert states == [("local", "STOPPING"), ("local", "STOPPED")]
    assert seen[1].sequence == seen[0].sequence + 1 and seen[0].sequence > snapshot.sequence
    assert seen[1].process_state.from_state == pb.STOPPING
    stream.cancel()

    # a client that saw up to STOPPING resumes: it gets STOPPED and what followed, no snapshot
    agent.stub.Start(pb.ProcessCommand(names=["local"], wait=True), timeout=30)
    resumed: queue.Queue = queue.Queue()
    stream2 = agent.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=seen[0].sequence))
    threading.Thread(target=_collect, args=(stream2, resumed), daemon=True).start()
    first = resumed.get(timeout=10)
    assert first.WhichOneof("kind") == "process_state" and first.sequence == seen[1].sequence
    following = [resumed.get(timeout=10) for _ in range(2)]
    assert [e.process_state.process.statename for e in following] == ["STARTING", "RUNNING"]
    stream2.cancel()


def test_watch_events_unknown_sequence_gets_snapshot(agent):
    stream = agent.stub.WatchEvents(pb.WatchEventsRequest(after_sequence=10**9))
    first = next(iter(stream))
    assert first.WhichOneof("kind") == "snapshot"
    stream.cancel()


def test_tail_log_last_bytes_and_follow(agent):
    chunks = agent.stub.TailLog(pb.TailLogRequest(name="talker", last_bytes=100), timeout=10)
    assert b"first-line\n" in b"".join(c.data for c in chunks)
    followed: queue.Queue = queue.Queue()
    stream = agent.stub.TailLog(pb.TailLogRequest(name="talker", last_bytes=0, follow=True))
    threading.Thread(target=_collect, args=(stream, followed), daemon=True).start()
    server = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(
        None, None, f"unix://{agent.dir}/supervisor.sock"))
    server.supervisor.sendProcessStdin("talker", "ping\n")  # the talker echoes it to its log
    data = b""
    while b"got-ping" not in data:
        data += followed.get(timeout=10).data
    stream.cancel()
    assert code_of(lambda: list(agent.stub.TailLog(pb.TailLogRequest(name="ghost"), timeout=10))) \
        == grpc.StatusCode.NOT_FOUND


def test_stock_supervisorctl_answers_at_the_same_time(agent):
    ctl = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(agent.config), "status"],
                         capture_output=True, text=True, timeout=30)
    assert ctl.returncode == 0, ctl.stdout + ctl.stderr
    assert "web:w1" in ctl.stdout and "RUNNING" in ctl.stdout


FLEET_V1 = """
[program:svc]
command=sleep 1000
startsecs=0

[program:other]
command=sleep 1000
startsecs=0
"""


def test_apply_config_dry_run_then_apply_restarts_only_changed(agent):
    plan = agent.stub.ApplyConfig(pb.ApplyConfigRequest(revision="r1", config_text=FLEET_V1, dry_run=True),
                                  timeout=30)
    assert (list(plan.added), list(plan.changed), list(plan.removed), plan.applied) == \
        (["other", "svc"], [], [], False)
    assert "svc" not in agent.by_name()
    agent.stub.ApplyConfig(pb.ApplyConfigRequest(revision="r1", config_text=FLEET_V1), timeout=60)
    wait_for(lambda: agent.by_name().get("svc") and agent.by_name()["svc"].statename == "RUNNING", 10)
    pids = {k: v.pid for k, v in agent.by_name().items()}
    v2 = FLEET_V1.replace("[program:svc]\ncommand=sleep 1000", "[program:svc]\ncommand=sleep 2000")
    reply = agent.stub.ApplyConfig(pb.ApplyConfigRequest(revision="r2", config_text=v2), timeout=60)
    assert (list(reply.added), list(reply.changed), list(reply.removed)) == ([], ["svc"], [])
    wait_for(lambda: agent.by_name()["svc"].statename == "RUNNING", 10)
    after = {k: v.pid for k, v in agent.by_name().items()}
    assert after["svc"] != pids["svc"]
    assert all(after[k] == pids[k] for k in pids if k != "svc")  # nothing else restarted
    shown = agent.stub.GetConfig(pb.GetConfigRequest(), timeout=10)
    assert shown.revision == "r2" and "sleep 2000" in shown.config_text and not shown.edited_by_hand
    assert agent.stub.GetInfo(pb.GetInfoRequest(), timeout=10).applied_revision == "r2"


@pytest.mark.parametrize("text,needle", [
    ("[program:local]\ncommand=sleep 1\n", "local"),          # clashes with the node's own program
    ("[supervisord]\nlogfile=/tmp/x\n", "supervisord"),        # daemon-level sections stay local
    ("[program:bad]\ncommand=sleep 1\nnumprocs=two\n", "numprocs"),
])
def test_apply_config_refuses_bad_revisions_and_changes_nothing(agent, text, needle):
    before = {k: (v.pid, v.statename) for k, v in agent.by_name().items()}
    revision = agent.stub.GetConfig(pb.GetConfigRequest(), timeout=10).revision
    with pytest.raises(grpc.RpcError) as info:
        agent.stub.ApplyConfig(pb.ApplyConfigRequest(revision="bad", config_text=text), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in info.value.details()
    assert ".staged-" not in info.value.details()
    if needle == "numprocs":  # a parse error names the revision, not the temp file it was staged in
        assert "revision bad" in info.value.details()
    assert {k: (v.pid, v.statename) for k, v in agent.by_name().items()} == before
    assert agent.stub.GetConfig(pb.GetConfigRequest(), timeout=10).revision == revision


def test_restarted_agent_comes_back_with_applied_revision(tmp_path):
    a = Agent(tmp_path)
    a.start()
    try:
        a.stub.ApplyConfig(pb.ApplyConfigRequest(revision="keep-me", config_text=FLEET_V1), timeout=60)
        wait_for(lambda: "svc" in a.by_name(), 10)
    finally:
        a.stop()
    # what a kill mid-apply leaves behind is removed when the agent starts again
    leftovers = [tmp_path / "state" / ".staged-abc123.conf", tmp_path / "state" / ".meta-xyz"]
    for path in leftovers:
        path.write_text("[program:half]\ncommand=sleep 1\n")
    b = Agent.__new__(Agent)
    b.dir, b.port, b.config, b.daemon = a.dir, a.port, a.config, None
    b.start()
    try:
        assert b.stub.GetConfig(pb.GetConfigRequest(), timeout=10).revision == "keep-me"
        assert b.by_name()["svc"].statename == "RUNNING"
        assert not any(path.exists() for path in leftovers)
        a.config.write_text(a.config.read_text() + "\n; an operator's note\n")
        assert b.stub.GetConfig(pb.GetConfigRequest(), timeout=10).edited_by_hand
    finally:
        b.stop()


def test_a_second_agent_on_a_grpc_port_in_use_refuses_to_start(agent, tmp_path):
    """grpcio binds with SO_REUSEPORT: unchecked, a second agent would share the first one's port
    without a word, and each call would go to one of the two at random."""
    config = write_config(tmp_path, textwrap.dedent(BASE).replace("{port}", str(agent.port)))
    second = subprocess.run([*AGENT, "-c", str(config), "-n"], capture_output=True, text=True, timeout=60)
    out = second.stdout + second.stderr
    assert second.returncode != 0, out
    assert f"cannot listen for gRPC on 127.0.0.1:{agent.port}: address in use" in out
    assert "Traceback" not in out
    assert agent.stub.GetInfo(pb.GetInfoRequest(), timeout=10).node == "node-a"  # the first serves on


# -- issue 15 item 5: undecodable requests and unbounded tails ------------------------------------

def test_invalid_utf8_in_a_string_field_is_invalid_argument(agent):
    raw = pb.ListProcessesRequest(names=["local"]).SerializeToString().replace(b"local", b"l\xffcal")
    call = agent.channel.unary_unary("/fleetvisor.v1.AgentService/ListProcesses",
                                     request_serializer=lambda b: b,
                                     response_deserializer=pb.ListProcessesResponse.FromString)
    with pytest.raises(grpc.RpcError) as info:
        call(raw, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not decode" in info.value.details() and "\n" not in info.value.details()
    stream = agent.channel.unary_stream("/fleetvisor.v1.AgentService/TailLog", request_serializer=lambda b: b,
                                        response_deserializer=pb.LogChunk.FromString)
    raw = pb.TailLogRequest(name="local", last_bytes=10).SerializeToString().replace(b"local", b"\xc3(cal")
    with pytest.raises(grpc.RpcError) as info:
        list(stream(raw, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert agent.processes()  # still serving
    assert "Traceback" not in "\n".join(agent.daemon.messages())


@pytest.mark.parametrize("count", [-5, 1000000000000])
def test_tail_lengths_out_of_bounds_are_invalid_argument(agent, count):
    with pytest.raises(grpc.RpcError) as info:
        list(agent.stub.TailLog(pb.TailLogRequest(name="local", last_bytes=count), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tail" in info.value.details()


def test_a_refusal_is_one_bounded_line(agent):
    """Regression (tests/fuzz/test_fuzz_agent_grpc.py): a name with a newline gave a two-line
    refusal, and a megabyte name a refusal bigger than the client's metadata limit, so the client
    saw its own RESOURCE_EXHAUSTED "Stream removed" instead."""
    for name, shown in (("\n0", "BAD_NAME: \\n0"), ("x" * (1 << 20), "BAD_NAME: " + "x" * 490 + "...")):
        with pytest.raises(grpc.RpcError) as info:
            agent.stub.Signal(pb.SignalCommand(names=[name], signal="HUP"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details().startswith(shown) and "\n" not in info.value.details()
