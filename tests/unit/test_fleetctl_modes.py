"""fleetctl's decisions that need no server: mode, exit codes, leader redirects, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import grpc
import pytest
from click.testing import CliRunner

from fleetvisor.cli.client import CommandError, describe_rpc_error, leader_redirect, local_identity
from fleetvisor.cli.context import Ctx, Mode, choose_mode
from fleetvisor.cli.exitcodes import control_code, fleet_status_code, node_result_code, results_code
from fleetvisor.cli.main import cli, main
from fleetvisor.cli.settings import Settings
from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import controller_pb2 as cpb

# -- mode --------------------------------------------------------------------------------------


def test_node_flag_beats_controller_which_beats_a_default_node():
    both = Settings(node="n:1", controllers=("c:1",))
    assert choose_mode("n:1", both) is Mode.NODE  # --node on the command line
    assert choose_mode(None, both) is Mode.FLEET  # node only from env/file: the controller wins
    assert choose_mode(None, Settings(controllers=("c:1",))) is Mode.FLEET
    assert choose_mode(None, Settings(node="n:1")) is Mode.NODE


def test_neither_is_a_usage_error_naming_both_options():
    with pytest.raises(CommandError) as info:
        choose_mode(None, Settings())
    message = str(info.value)
    assert info.value.exit_code == 2 and "--controller" in message and "--node" in message
    assert "\n" not in message


# -- exit codes --------------------------------------------------------------------------------

def results(*pairs: tuple[bool, str]) -> list[pb.ProcessResult]:
    return [pb.ProcessResult(name=f"p{i}", ok=ok, status=status) for i, (ok, status) in enumerate(pairs)]


def test_results_code_as_supervisorctl():
    assert results_code(results((True, "")), "start") == 0
    assert results_code(results((False, "ALREADY_STARTED")), "start") == 0
    assert results_code(results((False, "NOT_RUNNING")), "stop") == 0
    assert results_code(results((False, "NO_FILE")), "start") == 1
    assert results_code(results((False, "SPAWN_ERROR"), (False, "NO_FILE")), "start") == 7
    assert results_code(results((False, "NO_FILE"), (False, "ABNORMAL_TERMINATION")), "restart") == 7
    assert results_code(results((False, "ALREADY_STARTED")), "restart") == 1
    # signalling a stopped process is a failure, never "ended dead"
    assert results_code(results((False, "NOT_RUNNING")), "signal") == 1
    assert results_code(results((False, "BAD_SIGNAL")), "signal") == 1
    assert results_code(results((False, "")), "restart") == 1  # a fault without a name still counts


def test_fleet_control_code_is_the_worst_node():
    ok = cpb.NodeResult(node="a", ok=True, results=results((True, "")))
    ignored = cpb.NodeResult(node="b", ok=False, results=results((False, "ALREADY_STARTED")))
    unreachable = cpb.NodeResult(node="c", ok=False, error="unreachable")
    dead = cpb.NodeResult(node="d", ok=False, results=results((False, "SPAWN_ERROR")))
    assert node_result_code(unreachable, "start") == 1
    assert control_code([ok, ignored], "start") == 0
    assert control_code([ok, unreachable], "start") == 1
    assert control_code([unreachable, dead], "start") == 7
    assert control_code([], "start") == 0


def node(name: str, *states: str, up: bool = True, reachable: bool = True) -> cpb.NodeProcesses:
    return cpb.NodeProcesses(node=cpb.NodeInfo(name=name, up=up, reachable=reachable),
                             processes=[pb.ProcessInfo(name=f"p{i}", statename=s) for i, s in enumerate(states)])


def test_fleet_status_code():
    assert fleet_status_code([node("a", "RUNNING", "STARTING", "BACKOFF")]) == 0  # as supervisorctl
    assert fleet_status_code([node("a", "RUNNING"), node("b", "EXITED")]) == 3
    assert fleet_status_code([node("a", "RUNNING"), node("b", "RUNNING", up=False)]) == 3
    assert fleet_status_code([node("a", "RUNNING"), node("b", "RUNNING", reachable=False)]) == 3
    assert fleet_status_code([], selected_by_labels=True) == 4
    assert fleet_status_code([]) == 0


# -- leader redirect and errors ----------------------------------------------------------------

def test_leader_redirect_only_for_a_follower_naming_the_leader():
    fp = grpc.StatusCode.FAILED_PRECONDITION
    assert leader_redirect(fp, [("fleetvisor-leader", "10.0.0.1:7500")]) == "10.0.0.1:7500"
    assert leader_redirect(fp, (("other", "x"), ("fleetvisor-leader", b"10.0.0.2:7500"))) == "10.0.0.2:7500"
    assert leader_redirect(fp, [("fleetvisor-leader", "")]) is None  # no leader elected: a real failure
    assert leader_redirect(fp, []) is None and leader_redirect(fp, None) is None
    assert leader_redirect(grpc.StatusCode.UNAVAILABLE, [("fleetvisor-leader", "10.0.0.1:7500")]) is None
    assert leader_redirect(None, [("fleetvisor-leader", "10.0.0.1:7500")]) is None


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize("code, details, message, exit_code", [
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
     "Failed to connect to remote host: Connection refused",
     "cannot reach controller 127.0.0.1:1: Connection refused", 1),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", "controller 127.0.0.1:1 did not answer in time", 1),
    (grpc.StatusCode.NOT_FOUND, "no config named 'web'\nmore", "no config named 'web'", 4),
    (grpc.StatusCode.INVALID_ARGUMENT, "':x': the node part is empty", "':x': the node part is empty", 2),
    (grpc.StatusCode.FAILED_PRECONDITION, "no leader elected", "controller 127.0.0.1:1: no leader elected", 1),
    (grpc.StatusCode.UNAVAILABLE, "SSL handshake failed", "TLS handshake with controller 127.0.0.1:1 failed", 1),
    (grpc.StatusCode.UNAVAILABLE, "Stream removed (Socket closed)", "cannot reach controller 127.0.0.1:1", 1),
    (grpc.StatusCode.UNAVAILABLE, "", "cannot reach controller 127.0.0.1:1: unavailable", 1),
    # the controller's own UNAVAILABLE: it was reached, something behind it was not
    (grpc.StatusCode.UNAVAILABLE, "etcd is unavailable: connection refused",
     "controller 127.0.0.1:1: etcd is unavailable: connection refused", 1),
    (grpc.StatusCode.UNAVAILABLE, "web-1: unreachable (connection refused)",
     "controller 127.0.0.1:1: web-1: unreachable (connection refused)", 1),
    (grpc.StatusCode.PERMISSION_DENIED, "viewer v may not control web:* on node db-1: no policy grants it",
     "controller 127.0.0.1:1 refused: viewer v may not control web:* on node db-1", 1),
    (grpc.StatusCode.UNAUTHENTICATED, "operator m: certificate serial ab12 is revoked\nx",
     "controller 127.0.0.1:1 refused: operator m: certificate serial ab12 is revoked", 1),
])
def test_controller_errors_are_one_line(code, details, message, exit_code):
    error = describe_rpc_error(FakeRpcError(code, details), "127.0.0.1:1", "controller")
    assert str(error).startswith(message) and "\n" not in str(error) and error.exit_code == exit_code


def test_per_node_errors_keep_their_wording():
    error = describe_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; "
                                                   "last error: UNKNOWN: ipv4:10.0.0.5:7400: Connection refused"), "10.0.0.5:7400")
    assert str(error) == "cannot reach 10.0.0.5:7400: Connection refused"


def test_local_identity_is_user_at_host():
    user, _, host = local_identity().partition("@")
    assert user and host


# -- usage errors before any call --------------------------------------------------------------

@pytest.fixture
def run():
    clean = {key: None for key in os.environ if key.startswith("FLEETCTL_")}
    runner = CliRunner(env={**clean, "FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml"})

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=False)
    return invoke


def test_no_target_at_all(run):
    result = run("status")
    assert result.exit_code == 2 and "pass --controller HOST:PORT" in result.stderr
    assert "--node HOST:PORT" in result.stderr and result.stderr.count("\n") == 1


def test_fleet_only_commands_need_the_controller(run):
    for args in (["nodes"], ["audit"], ["leader"], ["config", "list"], ["config", "history", "web"]):
        result = run("--node", "127.0.0.1:1", *args)
        assert result.exit_code == 2 and "talks to the controller" in result.stderr, args


def test_per_node_only_things_refuse_fleet_options(run):
    node = ("--node", "127.0.0.1:1")
    assert "--label works in fleet mode only" in run(*node, "status", "--label", "a=b").stderr
    assert "--watch works in fleet mode only" in run(*node, "status", "--watch").stderr
    assert "--label works in fleet mode only" in run(*node, "restart", "app", "--label", "a=b").stderr
    shown = run(*node, "config", "show", "web")
    assert shown.exit_code == 2 and "takes no NAME" in shown.stderr
    info = run("--controller", "127.0.0.1:1", "info")
    assert info.exit_code == 2 and "pass --node" in info.stderr


@pytest.mark.parametrize("args, words", [
    (["status", "--label", "role"], "expected KEY=VALUE"),
    (["start"], "name required"),
    (["start", ":app"], "node part is empty"),
    (["signal", "HUP"], "name required"),
    (["tail", "app"], "give NODE:NAME"),
    (["config", "show"], "config name required"),
    (["config", "push", "/no/such/file", "--name", "web", "-m", "x"], "cannot read /no/such/file"),
    (["config", "push", "/dev/null", "--name", "web", "-m", "x", "--nodes", "a", "--label", "b=c"],
     "either --nodes or --label"),
    (["audit", "--since", "10"], "neither a duration"),
    (["nodes", "--label", "=x"], "key before '=' is empty"),
    (["acl", "set", "web-ops", "--group", "web", "--verb", "read", "--label", "role"], "expected KEY=VALUE"),
])
def test_fleet_usage_errors_are_one_line_before_any_call(run, args, words):
    result = run("--controller", "127.0.0.1:1", *args)
    assert result.exit_code == 2 and words in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_file_that_is_not_text_is_refused(run, tmp_path):
    binary = tmp_path / "x.conf"
    binary.write_bytes(b"\xff\xfe\x00")
    result = run("--controller", "127.0.0.1:1", "config", "push", str(binary), "--name", "x", "-m", "m")
    assert result.exit_code == 2 and "not UTF-8" in result.stderr


def test_every_command_has_an_example_in_its_help(run):
    groups = {"": ["status", "start", "stop", "restart", "signal", "tail", "nodes", "audit", "leader", "info"],
              "config": ["push", "history", "show", "diff", "rollback", "status", "list", "apply"],
              "acl": ["list", "show", "set", "delete"], "nodes": ["forget"], "certs": ["revoke", "revoked"]}
    for group, commands in groups.items():
        for command in commands:
            args = [group, command, "--help"] if group else [command, "--help"]
            result = run(*args)
            assert result.exit_code == 0 and "Example" in result.stdout and "fleetctl " in result.stdout, args


def test_click_usage_errors_are_one_line_too():
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")},
           "FLEETCTL_CONFIG": "/nonexistent/fleetctl.toml"}
    result = subprocess.run([sys.executable, "-m", "fleetvisor.cli.main", "--controller", "127.0.0.1:1", "config",
                             "push"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "Missing argument 'FILE'" in result.stderr and "fleetctl config push --help" in result.stderr


# -- -o/--output before or after the command ---------------------------------------------------

class CannedController:
    """Stands in for fleetctl's Controller object: each method answers with one canned reply."""

    address = "ctl:1"

    def __init__(self, replies: dict) -> None:
        self.replies = replies

    def call(self, method, request, *, timeout=None):
        return self.replies[method]


@pytest.fixture
def canned(monkeypatch):
    ctl = CannedController({
        "ListNodes": cpb.ListNodesResponse(nodes=[cpb.NodeInfo(name="web-1", address="10.0.0.5:7400", up=True,
                                                               reachable=True)]),
        "GetStatus": cpb.FleetStatus(nodes=[node("web-1", "RUNNING")]),
        "ListConfigs": cpb.ListConfigsResponse(),
        "ListOperations": cpb.ListOperationsResponse(),
    })
    monkeypatch.setattr(Ctx, "controller", lambda self, command="": ctl)


@pytest.mark.parametrize("args", [
    ["-o", "json", "nodes"], ["--output", "json", "nodes"], ["nodes", "-o", "json"], ["nodes", "--output", "json"],
    ["nodes", "--output=json"], ["nodes", "-ojson"], ["status", "-o", "json"], ["status", "web-1", "-o", "json"],
    ["status", "-o", "json", "web-1"], ["config", "list", "-o", "json"], ["config", "-o", "json", "list"],
    ["ops", "list", "--output", "json"], ["-o", "table", "nodes", "-o", "json"],
])
def test_output_json_before_or_after_the_command(run, canned, args):
    result = run("--controller", "127.0.0.1:1", *args)
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), dict)


def test_the_last_output_given_wins(run, canned):
    result = run("--controller", "127.0.0.1:1", "-o", "json", "nodes", "-o", "table")
    assert result.exit_code == 0 and result.stdout.split()[:2] == ["NAME", "ADDRESS"]


def test_a_bad_output_after_the_command_is_a_usage_error(run, canned):
    result = run("--controller", "127.0.0.1:1", "nodes", "-o", "yaml")
    assert result.exit_code == 2 and "'yaml' is not one of 'table', 'json'" in result.stderr


def commands(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))


def test_every_command_takes_output_after_its_name():
    found = [path for path, command in commands(cli)
             if path and not any(p.name == "output" and {"-o", "--output"} <= set(p.opts) for p in command.params)]
    assert found == [] and len(list(commands(cli))) > 30


# -- issue 15 item 8: bad input is one line, before any call ------------------------------------

@pytest.mark.parametrize("target", [("--controller", "127.0.0.1:1"), ("--node", "127.0.0.1:1")])
@pytest.mark.parametrize("count, words", [("99999999999999999999", "0<=x<="), ("-5", "0<=x<="),
                                          ("1000000000000", "0<=x<=")])
def test_tail_lengths_out_of_bounds_are_refused(run, target, count, words):
    result = run(*target, "tail", "-n", count, "web-1:app")
    assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.output


def test_config_apply_of_a_non_utf8_file_is_one_line(run, tmp_path):
    binary = tmp_path / "x.conf"
    binary.write_bytes(b"[program:x]\ncommand=\xff\xfe\n")
    result = run("--node", "127.0.0.1:1", "config", "apply", str(binary))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr and result.stderr.count("\n") == 1


def test_config_push_stops_reading_at_the_size_limit(run):
    result = run("--controller", "127.0.0.1:1", "config", "push", "/dev/zero", "--name", "x", "-m", "m")
    assert result.exit_code == 2 and "a config is limited to 1048576 bytes" in result.stderr


@pytest.mark.parametrize("message", ["", "   "])
def test_config_push_needs_a_message_that_says_something(run, message):
    result = run("--controller", "127.0.0.1:1", "config", "push", "/dev/null", "--name", "x", "-m", message)
    assert result.exit_code == 2 and "must not be empty" in result.stderr


def test_a_usage_error_click_lays_out_on_several_lines_is_one_line(monkeypatch, capsys):
    """Regression (tests/fuzz/test_fuzz_fleetctl.py): click lists the choices of a missing option
    one a line; fleetctl printed that as five lines."""
    monkeypatch.setattr(sys, "argv", ["fleetctl", "acl", "set", "ops"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == ("error: Missing option '--verb'. Choose from: read, control, deploy, admin "
                                       "(see: fleetctl acl set --help)\n")
