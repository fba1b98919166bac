"""The fleet's supervisor names and structs (controller/xmlrpc_shapes.py): pure, no fleet needed."""

import pytest

from fleetvisor.agent.faults import Fault, FaultError
from fleetvisor.controller import xmlrpc_shapes as shapes
from fleetvisor.controller.processes import ProcessResult
from fleetvisor.v1 import agent_pb2 as apb


@pytest.mark.parametrize(("text", "node", "group", "name", "pattern"), [
    ("web-1/app:app_00", "web-1", "app", "app_00", "web-1:app:app_00"),
    ("web-1/app:*", "web-1", "app", None, "web-1:app:*"),
    ("web-1/app:", "web-1", "app", None, "web-1:app:*"),
    ("web-1/app", "web-1", "app", "app", "web-1:app:app"),  # a bare name: the process of its own group
    ("db.example.com/a/b:c", "db.example.com", "a/b", "c", "db.example.com:a/b:c"),  # the first '/' ends the node
])
def test_names_parse_to_one_node_and_its_namespec(text, node, group, name, pattern):
    parsed = shapes.parse(text)
    assert (parsed.node, parsed.group, parsed.name, parsed.pattern) == (node, group, name, pattern)


@pytest.mark.parametrize("text", ["app:app", "/app:app", "web-1/", "web-1/:x", ""])
def test_names_without_a_node_or_group_are_bad_names(text):
    with pytest.raises(FaultError) as refused:
        shapes.parse(text)
    assert refused.value.code is Fault.BAD_NAME and refused.value.text == f"BAD_NAME: {text}"


def test_group_only_reading():
    assert shapes.parse("web-1/app", group_only=True).spec == "app:*"


def test_process_info_has_43_keys_and_state_numbers():
    proc = apb.ProcessInfo(name="app", group="app", namespec="app", state=apb.RUNNING, statename="RUNNING",
                           pid=42, start=100.5, now=160.2, description="pid 42, uptime 0:01:00",
                           stdout_logfile="/l/out", stderr_logfile="/l/err")
    info = shapes.process_info("web-1", proc)
    assert info == {"name": "app", "group": "web-1/app", "start": 100, "stop": 0, "now": 160, "state": 20,
                    "statename": "RUNNING", "spawnerr": "", "exitstatus": 0, "logfile": "/l/out",
                    "stdout_logfile": "/l/out", "stderr_logfile": "/l/err", "pid": 42,
                    "description": "pid 42, uptime 0:01:00"}
    down = shapes.down_info("web-1", proc, "node web-1 is down: last heartbeat 35s ago", 200.0)
    assert (down["state"], down["statename"], down["pid"], down["now"]) == (1000, "UNKNOWN", 0, 200)
    assert down["description"] == "node web-1 is down: last heartbeat 35s ago"
    assert set(shapes.unknown_node_info("web-2", "why", 1.0)) == set(info)


def test_down_reasons():
    assert shapes.down_reason("web-2", False, "", 100.0, now=135.4) == "node web-2 is down: last heartbeat 35s ago"
    assert shapes.down_reason("web-2", False, "", 0.0, now=5.0) == "node web-2 is down: no heartbeat seen"
    assert shapes.down_reason("web-2", True, "unreachable (Connection refused)", 100.0, now=101.0) == (
        "node web-2 is unreachable from this controller (unreachable (Connection refused)); last heartbeat 1s ago")


def test_results_carry_supervisor_fault_codes():
    ok = shapes.result_dict("web-1", ProcessResult("app:app_00", True, description="OK"))
    assert ok == {"name": "app_00", "group": "web-1/app", "status": 80, "description": "OK"}
    running = shapes.result_dict("web-1", ProcessResult("app", False, "ALREADY_STARTED", "already started"))
    assert running == {"name": "app", "group": "web-1/app", "status": 60, "description": "already started"}
    odd = shapes.result_dict("web-1", ProcessResult("app", False, "SOMETHING_NEW", "?"))
    assert odd["status"] == int(Fault.FAILED)
