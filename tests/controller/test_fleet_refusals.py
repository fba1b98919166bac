"""A config one node refuses holds up nothing else (issue 15): pushes are checked against the
node's own programs, a node gets every config it accepts, the refusal shows in `config status`
and `nodes`, and `fleetctl config delete` takes a config off its nodes."""

from __future__ import annotations

import grpc
import pytest

from fleetvisor.v1 import controller_pb2 as pb
from tests.support import wait_for

from .fleet_harness import fleetctl, fleetctl_json, one_line_error, states, wait_status
from .test_fleet_config import config_status, push

GOOD = "[program:good]\ncommand=sleep 1000\nstartsecs=0\nstopwaitsecs=2\n"
GOOD_V2 = GOOD + "environment=VERSION=2\n"
BAD_V1 = "[program:bad]\ncommand=sleep 1000\nstartsecs=0\nstopwaitsecs=2\n"
# The controller cannot know the node's environment; the node has no such variable and refuses.
BAD_V2 = BAD_V1.replace("startsecs=0", "startsecs=%(ENV_FLEETVISOR_TEST_NEVER_SET)s")


@pytest.fixture
def node(fleet):
    ctl = fleet.controller()
    fleet.agent("web-1", ctl)  # its own file defines [program:app]
    wait_status(ctl, lambda s: any(n.node.reachable for n in s.nodes))
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")
    return ctl  # its registration carries the sections of its own file


def pid_of(ctl, spec: str) -> int:
    return {p.namespec: p.pid for n in ctl.status().nodes for p in n.processes}.get(spec, 0)


def test_a_push_clashing_with_the_nodes_own_program_is_refused(node):
    with pytest.raises(grpc.RpcError) as refused:
        push(node, "web", "[program:app]\ncommand=sleep 1\n", nodes=["web-1"])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        "config web defines [program:app], which node web-1 already defines in its own config file: rename one "
        "of them, or leave the node out (--nodes, --label)")
    with pytest.raises(grpc.RpcError) as unknown:  # nothing was stored
        node.stub.ConfigHistory(pb.ConfigHistoryRequest(name="web"), timeout=5)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_refused_config_holds_up_no_other(node):
    push(node, "good", GOOD, nodes=["web-1"])
    wait_status(node, lambda s: states(s).get("web-1:good") == "RUNNING", what="good running")
    push(node, "bad", BAD_V2, nodes=["web-1"])  # stored: only the node can tell
    wait_for(lambda: "bad" in config_status(node)["web-1"].refused, 15, "web-1 to refuse config bad")
    status = config_status(node)["web-1"]
    assert "FLEETVISOR_TEST_NEVER_SET" in status.refused["bad"]
    assert status.applied_revision == "good@1" and not status.in_sync
    assert status.last_error.startswith("config bad refused: ")
    assert node.node("web-1").error.startswith("config bad refused: ")
    shown = fleetctl(node.address, "config", "status")
    assert shown.returncode == 0 and "config bad refused" in shown.stdout
    # the fleet summary lists the node's drift with the refusal
    [drift] = node.stub.GetStatus(pb.StatusRequest(summary=True), timeout=5).summary.problems
    assert (drift.kind, drift.node, drift.subject) == (pb.Problem.DRIFT, "web-1", "good@1")
    assert "bad@1" in drift.detail and "config bad refused: " in drift.detail

    # the next revision of the other config goes out while bad stays refused
    before = pid_of(node, "good")
    push(node, "good", GOOD_V2)
    wait_for(lambda: config_status(node)["web-1"].applied_revision == "good@2", 20, "good@2 applied beside bad")
    wait_status(node, lambda s: states(s).get("web-1:good") == "RUNNING" and pid_of(node, "good") != before,
                what="good restarted at revision 2")
    assert "bad" in config_status(node)["web-1"].refused

    # deleting the refused config puts the node back in sync
    deleted = fleetctl_json(node.address, "config", "delete", "bad", "-m", "never worked", "--yes")
    assert deleted == {"name": "bad", "last_revision": "1", "target_nodes": ["web-1"]}
    wait_for(lambda: config_status(node)["web-1"].in_sync, 20, "web-1 in sync without config bad")
    assert config_status(node)["web-1"].applied_revision == "good@2"
    assert not node.node("web-1").error
    audit = node.stub.ListAudit(pb.ListAuditRequest(limit=50), timeout=5).entries
    assert any(e.action == "config.delete" and e.ok for e in audit)


def test_a_refused_revision_leaves_the_node_on_the_one_it_runs(node):
    push(node, "good", GOOD, nodes=["web-1"])
    push(node, "bad", BAD_V1, nodes=["web-1"])
    wait_for(lambda: config_status(node)["web-1"].applied_revision == "bad@1,good@1", 20, "both applied")
    wait_status(node, lambda s: states(s).get("web-1:bad") == "RUNNING", what="bad running")
    running = pid_of(node, "bad")
    push(node, "bad", BAD_V2)
    push(node, "good", GOOD_V2)
    wait_for(lambda: config_status(node)["web-1"].applied_revision == "bad@1,good@2", 20,
             "good@2 applied, bad kept at revision 1")
    assert "bad" in config_status(node)["web-1"].refused
    assert pid_of(node, "bad") == running  # untouched


def test_fleetctl_config_delete(node):
    push(node, "good", GOOD, nodes=["web-1"])
    wait_status(node, lambda s: states(s).get("web-1:good") == "RUNNING", what="good running")
    asked = fleetctl(node.address, "config", "delete", "good", "-m", "gone")
    assert asked.returncode == 2
    assert one_line_error(asked) == ("error: delete config good and remove its programs from web-1? Repeat with "
                                     "--yes to confirm (there is no terminal to ask on)")
    unknown = fleetctl(node.address, "config", "delete", "nosuch", "-m", "gone", "--yes")
    assert unknown.returncode != 0 and one_line_error(unknown) == "error: no such config: nosuch"
    done = fleetctl(node.address, "config", "delete", "good", "-m", "gone", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "config good deleted (it was at revision 1); its programs are removed from web-1"
    wait_status(node, lambda s: "web-1:good" not in states(s), what="good removed from web-1")
    assert states(node.status()).get("web-1:app") == "RUNNING"  # the node's own program stays
    assert fleetctl_json(node.address, "config", "list") in ({}, {"configs": []})

    # its history stays; a later push starts it again, once it says where it goes
    history = node.stub.ConfigHistory(pb.ConfigHistoryRequest(name="good"), timeout=5)
    assert [r.revision for r in history.revisions] == [1] and history.current_revision == 0
    with pytest.raises(grpc.RpcError) as nowhere:
        push(node, "good", GOOD)
    assert nowhere.value.details() == "config good was deleted: say where it goes (--nodes or --label)"
    again = push(node, "good", GOOD, nodes=["web-1"])
    assert again.revision.revision == 2 and not again.unchanged
    wait_status(node, lambda s: states(s).get("web-1:good") == "RUNNING", what="good back on web-1")
