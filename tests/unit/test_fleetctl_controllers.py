"""fleetctl with a list of controllers: reading the list (flag, environment, file), the order it is
tried in, the memory of the one that answered, and the client going down the list.

The client is driven against small ControllerService servers in this process (real gRPC on
loopback): one that answers, one that refuses writes naming a leader, a port nobody listens on,
and a socket that takes connections but never speaks (a hung host).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from click.testing import CliRunner

from fleetvisor.cli import client
from fleetvisor.cli.client import CommandError, Controller, NoController, unanswered, unreachable
from fleetvisor.cli.controllers import MAX_REMEMBERED, AddressError, Memory, ordered, parse_list
from fleetvisor.cli.main import cli
from fleetvisor.cli.settings import SettingsError, resolve
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as cpb
from fleetvisor.v1 import controller_pb2_grpc as cpb_grpc

from tests.support import free_port
from tests.unit.test_fleetctl_modes import FakeRpcError as RpcError

# -- the list ----------------------------------------------------------------------------------


def test_one_address_or_several_in_order_blanks_trimmed_repeats_dropped():
    assert parse_list("10.0.0.1:7500", "--controller") == ("10.0.0.1:7500",)
    assert parse_list("b:2, a:1 ,c:3,a:1", "--controller") == ("b:2", "a:1", "c:3")
    assert parse_list(["ctl-1.example:7500", "[::1]:7500"], "controller in f.toml") == \
        ("ctl-1.example:7500", "[::1]:7500")
    assert parse_list("", "--controller") == () and parse_list([], "controller in f") == ()  # none, as before


@pytest.mark.parametrize("value, words", [
    ("a:1,,b:2", "--controller: element 2 of 'a:1,,b:2' is empty"),
    ("a:1,", "element 2 of 'a:1,' is empty"),
    (" , ", "element 1 of ' , ' is empty"),
    ("ctl-1", "'ctl-1' is not HOST:PORT"),
    (":7500", "':7500' is not HOST:PORT"),
    ("a:b", "'a:b': the port must be a number from 1 to 65535"),
    ("a:0", "the port must be a number from 1 to 65535"),
    ("a:70000", "the port must be a number from 1 to 65535"),
    ("::1:7500", "write an IPv6 address in brackets, as [::1]:7500"),
    ("[::1:7500", "an IPv6 address goes in brackets"),
    ("a b:1", "'a b:1' is not HOST:PORT"),
    ("http://a:1", "is not HOST:PORT"),
    (["a:1", 7], "must be a string"),
    (7500, "must be a string"),
])
def test_bad_lists_are_one_line_naming_the_source(value, words):
    with pytest.raises(AddressError) as info:
        parse_list(value, "--controller")
    message = str(info.value)
    assert words in message and message.startswith("--controller") and "\n" not in message


@pytest.fixture
def no_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("FLEETCTL_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_flag_beats_environment_beats_file_and_the_file_takes_a_list_or_a_string(no_env, tmp_path):
    listed = tmp_path / "listed.toml"
    listed.write_text('controller = ["a:1", "b:2"]\n')
    joined = tmp_path / "joined.toml"
    joined.write_text('controller = "c:3, d:4"\n')
    assert resolve({}, str(listed)).controllers == ("a:1", "b:2")
    assert resolve({}, str(joined)).controllers == ("c:3", "d:4")
    no_env.setenv("FLEETCTL_CONTROLLER", "e:5,f:6")
    assert resolve({}, str(listed)).controllers == ("e:5", "f:6")
    assert resolve({"controller": "g:7"}, str(listed)).controllers == ("g:7",)


@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_a_bad_element_names_where_it_came_from(no_env, tmp_path, where):
    path = tmp_path / "fleetctl.toml"
    path.write_text('controller = ["a:1", ""]\n' if where == "file" else "")
    if where == "env":
        no_env.setenv("FLEETCTL_CONTROLLER", "a:1,nohost")
    flags = {"controller": "a:1,b:x"} if where == "flag" else {}
    with pytest.raises(SettingsError) as info:
        resolve(flags, str(path))
    source = {"flag": "--controller:", "env": "FLEETCTL_CONTROLLER:", "file": f"controller in {path}:"}[where]
    assert str(info.value).startswith(source), str(info.value)


def test_bad_lists_on_the_command_line_are_one_line_and_a_usage_error(no_env):
    runner = CliRunner(env={"FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml"})
    for value in ("a:1,,b:2", "a:1,b", "[::1]"):
        result = runner.invoke(cli, ["--controller", value, "leader"])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, (value, result.stderr)
        assert result.stderr.startswith("error: --controller: ") and "Traceback" not in result.stderr
    env = runner.invoke(cli, ["leader"], env={"FLEETCTL_CONTROLLER": "a:1,,"})
    assert env.exit_code == 2 and env.stderr.startswith("error: FLEETCTL_CONTROLLER: element 2")


# -- order and memory --------------------------------------------------------------------------

def test_the_one_that_answered_goes_first_the_rest_keep_their_order():
    assert ordered(("a:1", "b:2", "c:3"), "c:3") == ("c:3", "a:1", "b:2")
    assert ordered(("a:1", "b:2", "c:3"), "b:2") == ("b:2", "a:1", "c:3")
    assert ordered(("a:1", "b:2"), None) == ("a:1", "b:2")
    assert ordered(("a:1", "b:2"), "x:9") == ("a:1", "b:2")  # no longer listed: ignored


def test_memory_is_per_fleet_whatever_the_order_and_survives_a_new_process(tmp_path):
    path = tmp_path / "state" / "fleetvisor" / "fleetctl-controllers.json"
    Memory(path).remember(("a:1", "b:2", "c:3"), "b:2")
    Memory(path).remember(("x:1", "y:2"), "y:2")
    assert Memory(path).recall(("c:3", "a:1", "b:2")) == "b:2"  # the same fleet listed in another order
    assert Memory(path).recall(("x:1", "y:2")) == "y:2"
    assert Memory(path).recall(("a:1", "b:2")) is None  # another list
    Memory(path).remember(("a:1", "b:2", "c:3"), "c:3")
    assert Memory(path).recall(("a:1", "b:2", "c:3")) == "c:3"
    assert json.loads(path.read_text())["answered"] == {"x:1,y:2": "y:2", "a:1,b:2,c:3": "c:3"}
    assert oct(path.parent.stat().st_mode & 0o777) == oct(0o700)


def test_one_address_keeps_no_memory(tmp_path):
    path = tmp_path / "fleetctl-controllers.json"
    Memory(path).remember(("a:1",), "a:1")
    assert not path.exists() and Memory(path).recall(("a:1",)) is None


def test_memory_keeps_the_most_recent_fleets_only(tmp_path):
    path = tmp_path / "m.json"
    for n in range(MAX_REMEMBERED + 5):
        Memory(path).remember((f"a{n}:1", f"b{n}:2"), f"b{n}:2")
    kept = json.loads(path.read_text())["answered"]
    assert len(kept) == MAX_REMEMBERED and f"a{MAX_REMEMBERED + 4}:1,b{MAX_REMEMBERED + 4}:2" in kept
    assert "a0:1,b0:2" not in kept


def test_a_memory_that_cannot_be_read_or_written_changes_nothing(tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    unwritable = Memory(blocked / "fleetvisor" / "m.json")
    unwritable.remember(("a:1", "b:2"), "b:2")  # the directory cannot be made: no exception
    assert unwritable.recall(("a:1", "b:2")) is None
    garbage = tmp_path / "garbage.json"
    for data in (b"{not json", b'["a list"]', b'{"answered": 7}', b'{"answered": {"a:1,b:2": 5}}', b"\xff\xfe"):
        garbage.write_bytes(data)
        assert Memory(garbage).recall(("a:1", "b:2")) is None
        Memory(garbage).remember(("a:1", "b:2"), "b:2")  # rewritten whole
        assert Memory(garbage).recall(("a:1", "b:2")) == "b:2"


def test_the_state_dir_follows_xdg_state_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert Memory().path == tmp_path / "fleetvisor" / "fleetctl-controllers.json"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Memory().path == tmp_path / "home" / ".local" / "state" / "fleetvisor" / "fleetctl-controllers.json"


# -- what counts as no answer ------------------------------------------------------------------

REFUSED = RpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: "
                   "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused")
BROKE = RpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")
LATE = RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
ETCD = RpcError(grpc.StatusCode.UNAVAILABLE, "etcd is unavailable: connection refused")
TLS = RpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: "
               "ipv4:127.0.0.1:1: Ssl handshake failed: SSL_ERROR_SSL: CERTIFICATE_VERIFY_FAILED")
GONE = RpcError(grpc.StatusCode.NOT_FOUND, "no such node: web-9")


@pytest.mark.parametrize("exc, read, write_unconnected, write_connected", [
    (REFUSED, True, True, True),   # "failed to connect": never sent, whatever the probe said
    (BROKE, True, True, False),    # broke off during a call: a write may have been carried out
    (LATE, True, True, False),
    (TLS, True, True, True),
    (ETCD, False, False, False),   # the controller's own words: an answer
    (GONE, False, False, False),
])
def test_which_failures_send_a_call_on_to_the_next_controller(exc, read, write_unconnected, write_connected):
    assert unanswered(exc, read=True, connected=True) is read
    assert unanswered(exc, read=False, connected=False) is write_unconnected
    assert unanswered(exc, read=False, connected=True) is write_connected


def test_unreachable_is_not_a_refusal():
    assert unreachable(REFUSED) and unreachable(LATE) and unreachable(BROKE)
    assert not unreachable(TLS) and not unreachable(ETCD) and not unreachable(GONE)
    hung_up = RpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: "
                       "UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed")
    assert unreachable(hung_up) and not unreachable(hung_up, tls=False)  # plaintext to a mutual-TLS server


# -- the client down a real list ---------------------------------------------------------------

class Stand(cpb_grpc.ControllerServiceServicer):
    """A controller stand-in: says who it is and whether it leads; a follower refuses writes
    naming the leader's address, as controller/service.py does."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.leader_address = ""
        self.calls: list[str] = []

    def GetLeader(self, request, context):
        self.calls.append("GetLeader")
        return cpb.LeaderInfo(leader_id="x", leader_address=self.leader_address, controller_id=self.name,
                              is_leader=not self.leader_address)

    def PushConfig(self, request, context):
        self.calls.append("PushConfig")
        if self.leader_address:
            context.set_trailing_metadata((("fleetvisor-leader", self.leader_address),))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"this controller is not the leader; the leader is at {self.leader_address}")
        return cpb.PushConfigResponse(target_nodes=[self.name])

    def GetStatus(self, request, context):
        """A fleet of 1500 nodes of 20 processes: about 6 MB, past gRPC's default 4 MiB."""
        self.calls.append("GetStatus")
        procs = [apb.ProcessInfo(name=f"p{i:02d}", group="app", namespec=f"app:p{i:02d}", statename="RUNNING",
                                 description="pid 4242, uptime 1 day, 2:03:04" + " " * 100) for i in range(20)]
        return cpb.FleetStatus(controller_id=self.name, nodes=[
            cpb.NodeProcesses(node=cpb.NodeInfo(name=f"n-{n:04d}", address="10.0.0.1:7401"), processes=procs)
            for n in range(1500)])

    def WatchStatus(self, request, context):
        self.calls.append("WatchStatus")
        for n in range(3):
            yield cpb.FleetStatus(controller_id=self.name, now=n)


@pytest.fixture
def stands() -> Iterator[dict[str, tuple[str, Stand]]]:
    """Three servers: {"a": (address, servicer), ...}."""
    servers, made = [], {}
    for name in ("a", "b", "c"):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        stand = Stand(name)
        cpb_grpc.add_ControllerServiceServicer_to_server(stand, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        made[name] = (f"127.0.0.1:{port}", stand)
    try:
        yield made
    finally:
        for server in servers:
            server.stop(None)


@pytest.fixture
def hung() -> Iterator[str]:
    """A host that takes the TCP connection and never says a word (gRPC stays CONNECTING)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def dead() -> str:
    return f"127.0.0.1:{free_port()}"


def settings(timeout: float = 10.0):
    return resolve({"timeout": timeout}, "/dev/null")


def test_a_dead_first_controller_is_passed_over_and_the_answering_one_asked_first_next_time(stands, tmp_path):
    a, b, stand_b = stands["a"][0], stands["b"][0], stands["b"][1]
    memory = Memory(tmp_path / "m.json")
    listed = (dead(), a, b)
    ctl = Controller(listed, settings(), memory=memory)
    assert ctl.call("GetLeader", cpb.GetLeaderRequest()).controller_id == "a"
    assert ctl.address == a and stand_b.calls == []
    assert memory.recall(listed) == a
    later = Controller(listed, settings(), memory=memory)  # the next fleetctl run
    assert later.candidates()[0] == a

    two = Controller((b, a), settings(), memory=memory)
    assert two.call("GetLeader", cpb.GetLeaderRequest()).controller_id == "b"
    assert memory.recall((a, b)) == b and memory.recall(listed) == a  # each list its own


def test_a_write_to_a_follower_reaches_the_leader_it_names(stands, tmp_path):
    (a, stand_a), (b, stand_b) = stands["a"], stands["b"]
    stand_a.leader_address = b
    memory = Memory(tmp_path / "m.json")
    listed = (dead(), a, b)
    ctl = Controller(listed, settings(), memory=memory)
    reply = ctl.call("PushConfig", cpb.PushConfigRequest(name="x"))
    assert list(reply.target_nodes) == ["b"] and stand_a.calls == ["PushConfig"] and stand_b.calls == ["PushConfig"]
    assert ctl.address == b and memory.recall(listed) == b  # the leader answered: asked first next time


def test_a_redirect_to_a_dead_leader_says_who_named_it(stands):
    a, stand_a = stands["a"]
    gone = dead()
    stand_a.leader_address = gone
    with pytest.raises(CommandError) as info:
        Controller((a,), settings()).call("PushConfig", cpb.PushConfigRequest(name="x"))
    assert str(info.value) == f"cannot reach controller {gone}: Connection refused (the leader, as named by {a})"


def test_redirects_that_go_round_in_a_circle_end(stands):
    (a, stand_a), (b, stand_b) = stands["a"], stands["b"]
    stand_a.leader_address, stand_b.leader_address = b, a
    with pytest.raises(CommandError) as info:
        Controller((a,), settings()).call("PushConfig", cpb.PushConfigRequest(name="x"))
    assert str(info.value).startswith(f"controller {b}: this controller is not the leader")
    assert str(info.value).endswith(f"(the leader, as named by {a})")  # b's refusal, not a loop
    assert stand_a.calls == ["PushConfig"] and stand_b.calls == ["PushConfig"]


def test_a_hung_host_costs_the_connect_bound_not_the_timeout(stands, hung, monkeypatch):
    a, _ = stands["a"]
    monkeypatch.setattr(client, "CONNECT_TIMEOUT", 0.5)
    ctl = Controller((hung, a), settings(timeout=60))
    assert ctl.call("PushConfig", cpb.PushConfigRequest(name="x")).target_nodes == ["a"]  # a write too: never sent
    with pytest.raises(NoController) as info:
        Controller((hung, dead()), settings(timeout=2)).call("GetLeader", cpb.GetLeaderRequest())
    assert f"controller {hung} took no connection within 0.5 s" in str(info.value)
    assert info.value.exit_code == 4


def test_none_answering_is_one_line_naming_each_and_why(stands, hung, monkeypatch):
    monkeypatch.setattr(client, "CONNECT_TIMEOUT", 0.5)
    first, second = dead(), dead()
    with pytest.raises(NoController) as info:
        Controller((first, hung, second), settings(timeout=2)).call("GetLeader", cpb.GetLeaderRequest())
    assert str(info.value) == (f"no controller answered (3 tried): cannot reach controller {first}: Connection "
                               f"refused; controller {hung} took no connection within 0.5 s; cannot reach "
                               f"controller {second}: Connection refused")
    assert info.value.exit_code == 4
    with pytest.raises(NoController) as one:
        Controller((first,), settings()).call("GetLeader", cpb.GetLeaderRequest())
    assert str(one.value) == f"cannot reach controller {first}: Connection refused" and one.value.exit_code == 4


def test_a_stream_opens_at_the_first_controller_that_answers(stands):
    (a, stand_a), b = stands["a"], stands["b"][0]
    ctl = Controller((dead(), b, a), settings())
    got = [m.controller_id for m in ctl.stream("WatchStatus", cpb.StatusRequest())]
    assert got == ["b", "b", "b"] and stand_a.calls == [] and ctl.address == b
    with pytest.raises(NoController) as info:
        list(Controller((dead(), dead()), settings()).stream("WatchStatus", cpb.StatusRequest()))
    assert str(info.value).startswith("no controller answered (2 tried): cannot reach controller")


def test_fleetctl_leader_with_a_list_and_the_state_file(stands, tmp_path):
    a, _ = stands["a"]
    gone = dead()
    runner = CliRunner(env={"FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml", "FLEETCTL_CONTROLLER": None,
                            "XDG_STATE_HOME": str(tmp_path)})
    result = runner.invoke(cli, ["--controller", f"{gone},{a}", "-o", "json", "leader"])
    assert result.exit_code == 0 and json.loads(result.stdout)["controller_id"] == "a", result.stderr
    assert Memory(tmp_path / "fleetvisor" / "fleetctl-controllers.json").recall((gone, a)) == a
    state = tmp_path / "fleetvisor" / "fleetctl-controllers.json"
    state.unlink()
    state.mkdir()  # the state can no longer be read or written (even by root): the command still works
    again = runner.invoke(cli, ["--controller", f"{a},{gone}", "leader"])
    assert again.exit_code == 0 and again.stderr == "", again.stderr
    nobody = runner.invoke(cli, ["--controller", f"{gone},{dead()}", "status"])
    assert nobody.exit_code == 4 and nobody.stderr.count("\n") == 1 and "no controller answered (2 tried)" in \
        nobody.stderr and "patterns are" not in nobody.stderr


def test_a_status_past_grpcs_default_4_mib_is_received(stands):
    """README's limits: fleetctl takes a status reply up to 64 MiB (a 1000-node fleet's is ~4.1 MB)."""
    a, _ = stands["a"]
    reply = Controller((a,), settings()).call("GetStatus", cpb.StatusRequest())
    assert reply.ByteSize() > 4 * 1024 * 1024 and len(reply.nodes) == 1500
