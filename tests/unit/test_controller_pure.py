"""The controller's pure parts, without etcd or agents: planning, selection, records, config
validation, the operation record and its transitions, and the error mapping."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from types import SimpleNamespace

import grpc
import pytest
from google.protobuf import json_format

from fleetvisor.agent.security.policy import Policy, PolicyError
from fleetvisor.cli.client import leader_redirect
from fleetvisor.controller import configs, opmodel, planning, records, selection, transitions, unreadable
from fleetvisor.controller.errors import Conflict, CorruptRecord, InvalidArgument, NotFound, NotLeader, Unavailable
from fleetvisor.controller.membership import dial_address
from fleetvisor.controller.nodepolicy import same_revision
from fleetvisor.controller.operations import new_operation
from fleetvisor.controller.opmodel import Batch, Kind, OnFailure, Operation, OpState, Spec, Step, StepState
from fleetvisor.controller.processes import ProcState
from fleetvisor.controller.records import AssignmentRecord, MemberRecord, RevisionRecord, Selector
from fleetvisor.controller.registrations import pace
from fleetvisor.controller.service import ControllerServicer, operation_message, spec_of, status_of
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb

# -- planning --------------------------------------------------------------------------------------


@pytest.mark.parametrize("total, batch, max_unavailable, size", [
    (10, 3, "", 3), (10, 0, "", 1), (10, 0, "4", 4), (10, 0, "25%", 2), (3, 0, "10%", 1), (10, 0, "100%", 10),
])
def test_batch_size(total, batch, max_unavailable, size):
    assert planning.batch_size(total, batch, max_unavailable) == size


@pytest.mark.parametrize("batch, max_unavailable", [(-1, ""), (0, "0"), (0, "0%"), (0, "101%"), (0, "x")])
def test_batch_size_refuses_nonsense(batch, max_unavailable):
    with pytest.raises(planning.PlanError) as info:
        planning.batch_size(10, batch, max_unavailable)
    assert isinstance(info.value, InvalidArgument)


def test_plan_orders_by_name_with_canaries_first():
    assert planning.plan(["c", "a", "b", "e", "d"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert planning.plan(["c", "a", "b", "e", "d"], 2, canary=1) == [["a"], ["b", "c"], ["d", "e"]]
    with pytest.raises(planning.PlanError, match="no node"):
        planning.plan([], 1)
    with pytest.raises(planning.PlanError, match="leaves no node"):
        planning.plan(["a", "b"], 1, canary=2)


@dataclass
class Proc:
    group: str
    name: str
    state: int
    pid: int = 0
    description: str = ""
    health: int = planning.Checked.NONE
    health_message: str = ""

    @property
    def namespec(self) -> str:
        return f"{self.group}:{self.name}"

    @property
    def statename(self) -> str:
        return ProcState(self.state).name


def test_health_wants_every_process_of_the_groups_running_with_a_new_pid():
    procs = [Proc("web", "web_0", ProcState.RUNNING, 10), Proc("web", "web_1", ProcState.STARTING, 11),
             Proc("db", "db", ProcState.FATAL, 0)]
    assert planning.health(procs, {"web"}, set()) == planning.Health(False, "")
    procs[1].state = ProcState.RUNNING
    assert planning.health(procs, {"web"}, set()).all_running
    assert not planning.health(procs, {"web"}, {10}).all_running  # web_0 still runs its old pid
    assert planning.health(procs, {"db"}, set()).failure == "db:db is FATAL"
    assert planning.health(procs, {"nosuch"}, set()) == planning.Health(False, "")


def test_a_process_with_a_health_check_is_ready_only_when_healthy():
    web = Proc("web", "web", ProcState.RUNNING, 10, health=planning.Checked.UNKNOWN)
    assert planning.health([web], {"web"}, set()) == planning.Health(False, "")  # not yet told
    web.health = planning.Checked.HEALTHY
    assert planning.health([web], {"web"}, set()).all_running
    web.health, web.health_message = planning.Checked.UNHEALTHY, "http://x:1/ answered HTTP 500"
    assert planning.health([web], {"web"}, set()).failure == \
        "web:web is RUNNING but unhealthy (http://x:1/ answered HTTP 500)"
    # the old run's verdict, before the restart shows: not a failure of the new one
    assert planning.health([web], {"web"}, {10}) == planning.Health(False, "")


def test_the_gate_of_a_group_is_its_health_check_where_it_has_one():
    procs = [Proc("web", "web", ProcState.RUNNING, 1, health=planning.Checked.UNKNOWN), Proc("db", "db", ProcState.RUNNING)]
    assert (planning.gate(procs, "web"), planning.gate(procs, "db")) == ("health check", "RUNNING")


def test_health_is_numbered_as_on_the_wire():
    assert [(c.name, int(c)) for c in planning.Checked] == [
        ("NONE", apb.HEALTH_UNSPECIFIED), ("UNKNOWN", apb.HEALTH_UNKNOWN), ("HEALTHY", apb.HEALTHY),
        ("UNHEALTHY", apb.UNHEALTHY)]


def test_process_states_are_numbered_as_on_the_wire():
    for state in ProcState:
        assert apb.ProcessState.Value(state.name if state else "PROCESS_STATE_UNSPECIFIED") == state


def test_groups_of_a_config():
    text = "[program:a]\ncommand=x\n[group:g]\nprograms=b\n[program:b]\ncommand=y\n[eventlistener:e]\n"
    assert planning.groups_of(text) == {"a", "g", "b", "e"}


# -- selection -------------------------------------------------------------------------------------


def test_selection_patterns():
    assert selection.parse_all([]) == [selection.Pattern("*")]
    assert selection.parse("all") == selection.Pattern("*")
    web = selection.parse("web-*:app")
    assert web.matches_node("web-1") and not web.matches_node("db-1") and not web.exact_node
    assert web.matches_process("app", "app") and not web.matches_process("other", "app")
    grouped = selection.parse("n1:grp:w*")
    assert grouped.exact_node and grouped.matches_process("grp", "worker") and not grouped.matches_process("grp", "x")
    with pytest.raises(selection.SelectionError):
        selection.parse(":app")


# -- records and configs ---------------------------------------------------------------------------


def test_records_ignore_unknown_fields_and_refuse_garbage():
    member = MemberRecord("n1", "10.0.0.1:7500", {"role": "web"}, first_seen=5.0)
    raw = json.dumps({**json.loads(records.encode(member)), "from_the_future": 1}).encode()
    assert records.decode(MemberRecord, raw) == member
    assert records.decode(MemberRecord, b"not json") is None
    assert records.decode(MemberRecord, b'{"address": "x"}') is None  # a required field is missing
    assert records.decode(MemberRecord, None) is None


def test_a_corrupt_record_is_unreadable_and_named_by_its_key_never_a_crash():
    """Regressions from tests/fuzz/test_fuzz_records.py: each of these raised an arbitrary
    exception (AttributeError, OverflowError, TypeError, ValueError) or decoded into a record that
    broke its reader later."""
    key = "members/n1"
    for raw, why in ((b"[]", "not a JSON object"), (b"\xff", "not JSON"),
                     (b'{"name": "n1", "address": "a", "labels": ["role", "web"]}',
                      "field labels is not an object of strings"),
                     (b'{"name": "n1"}', "field address missing")):
        with pytest.raises(CorruptRecord, match=f"^{key}: {why}$"):
            records.load(MemberRecord, key, raw)
        assert records.decode(MemberRecord, raw) is None
    assert records.decode(AssignmentRecord, b'{"revision": 2, "rollout": {"op": "x"}}') is None
    for raw in (b'{"id": "x", "spec": []}', b'{"id": "x", "spec": {"batch": 1e400}}',
                b'{"version": 1, "id": "x", "spec": {}, "batches": [{"nodes": [{"node": 5}]}]}'):
        with pytest.raises(CorruptRecord, match=r"^ops/x: operation x cannot be read"):
            opmodel.decode(raw, "ops/x")
    with pytest.raises(PolicyError, match="version is not a number"):
        Policy.from_json('{"name": "p", "verbs": ["read"], "subjects": {"users": ["u"]}, "version": "2"}')
    revision = records.encode(RevisionRecord("t", "a", "m", 1.0, "s"))
    assert list(configs.revisions_of({"configs/c/revs/junk": revision, "configs/c/revs/0000000002": revision},
                                     "c")) == [2]
    assert unreadable.problem("leader", b"[]") == "leader: not an object of strings"
    assert unreadable.problem("configs/c/revs/junk", revision).startswith("configs/c/revs/junk: not a config")
    assert unreadable.problem("acl/p", b"[]") is None  # acl.py's to report


def test_an_operation_spec_with_an_unknown_enum_value_is_invalid_argument():
    """Regression: spec_of raised ValueError (UNKNOWN with a traceback) for an on_failure or kind
    number this controller does not know."""
    for spec in (pb.OperationSpec(on_failure=7), pb.OperationSpec(kind=9)):
        with pytest.raises(InvalidArgument, match="unknown operation"):
            spec_of(spec)


def test_selector_matches_names_or_all_labels():
    web = MemberRecord("n1", "a", {"role": "web", "zone": "a"})
    assert Selector(("n1",)).matches(web)
    assert Selector((), {"role": "web"}).matches(web)
    assert not Selector((), {"role": "web", "zone": "b"}).matches(web)
    assert not Selector().matches(web) and Selector().empty


def test_config_names_and_validation():
    configs.check_name("web-1.v2_x")
    for bad in ("", ".hidden", "a/b", "a b"):
        with pytest.raises(InvalidArgument):
            configs.check_name(bad)
    configs.validate({"ok": "[program:a]\ncommand=sleep 1\n"})
    with pytest.raises(InvalidArgument) as info:
        configs.validate({"bad": "[program:a]\n"})
    assert "bad.conf" in str(info.value) and "fleetvisor-validate" not in str(info.value)
    with pytest.raises(InvalidArgument):  # two configs that define the same program clash
        configs.validate({"one": "[program:a]\ncommand=x\n", "two": "[program:a]\ncommand=y\n"})


def _entries(name: str, revisions: dict[int, str], current: int, selector: Selector,
             rollout: dict | None = None) -> dict[str, bytes]:
    entries = {records.revision_key(name, n): records.encode(RevisionRecord(text, "me", "", 0.0, ""))
               for n, text in revisions.items()}
    entries[records.assignment_key(name)] = records.encode(
        AssignmentRecord(current, records.selector_data(selector), 0.0, rollout or {}))
    return entries


def test_desired_config_during_a_rollout():
    entries = {**_entries("web", {1: "[program:a]\ncommand=v1\n", 2: "[program:a]\ncommand=v2\n"}, 2,
                          Selector((), {"role": "web"}), {"op": "op-1", "previous": 1, "done": ["n1"]}),
               **_entries("base", {1: "[program:b]\ncommand=b\n"}, 1, Selector(("n1", "n2")))}
    current = configs.current_configs(entries)
    n1, n2, n3 = (MemberRecord(n, "a", {"role": "web"}) for n in ("n1", "n2", "n3"))
    assert configs.desired_for(n1, current.values()).revision == "base@1,web@2"
    assert configs.desired_for(n2, current.values()).revision == "base@1,web@1"
    assert "command=v1" in configs.desired_for(n3, current.values()).text
    assert configs.desired_for(MemberRecord("x", "a"), current.values()) == configs.Desired("", "")
    assert same_revision("", "none") and not same_revision("web@1", "web@2")


def test_dial_address_fills_a_wildcard_host_from_the_peer():
    assert dial_address("0.0.0.0:7500", "10.0.0.5") == "10.0.0.5:7500"
    assert dial_address(":7500", "::1") == "[::1]:7500"
    assert dial_address("node-1:7500", "10.0.0.5") == "node-1:7500"


# -- the operation record --------------------------------------------------------------------------

# As the controller stored operations before the versioned record: protobuf JSON, camelCase,
# int64 as strings, default values left out.
OLD_RECORD = (
    b'{"id": "20260101-120000-abcdef", "spec": {"kind": "CONFIG_ROLLOUT", "selector": {"labels": {"role": "web"}},'
    b' "batch": 1, "healthyForSeconds": 5.0, "timeoutSeconds": 300.0, "onFailure": "PAUSE", "autoRevert": true,'
    b' "configName": "extra", "configRevision": "3", "previousRevision": "2"}, "state": "OP_PAUSED", "batches":'
    b' [{"nodes": [{"node": "n1", "state": "STEP_DONE", "startedAt": 1.5, "healthyAt": 2.5, "doneAt": 3.5,'
    b' "pidsBefore": [11, 12]}]}, {"nodes": [{"node": "n2", "state": "STEP_REVERTED", "error": "restart failed:'
    b' boom", "doneAt": 4.0}]}, {"nodes": [{"node": "n3", "state": "STEP_PENDING"}]}], "currentBatch": 1,'
    b' "reason": "n2: restart failed: boom", "author": "alice@host (unverified)", "message": "rolling",'
    b' "createdAt": 1767268800.5, "updatedAt": 1767268900.25, "controllerId": "ctl-1"}')

OLD_AS_NEW = Operation(
    id="20260101-120000-abcdef", state=OpState.PAUSED, current_batch=1, reason="n2: restart failed: boom",
    author="alice@host (unverified)", message="rolling", created_at=1767268800.5, updated_at=1767268900.25,
    controller_id="ctl-1",
    spec=Spec(kind=Kind.CONFIG_ROLLOUT, selector=Selector((), {"role": "web"}), batch=1, healthy_for_seconds=5.0,
              timeout_seconds=300.0, on_failure=OnFailure.PAUSE, auto_revert=True, config_name="extra",
              config_revision=3, previous_revision=2),
    batches=[Batch([Step("n1", StepState.DONE, started_at=1.5, healthy_at=2.5, done_at=3.5, pids_before=[11, 12])]),
             Batch([Step("n2", StepState.REVERTED, error="restart failed: boom", done_at=4.0)]),
             Batch([Step("n3", StepState.PENDING)])])


def test_an_operation_stored_in_the_old_format_is_read():
    assert opmodel.decode(OLD_RECORD) == OLD_AS_NEW
    # an operation with every default left out, as protobuf JSON writes a fresh one
    assert opmodel.decode(b'{"id": "x", "spec": {}, "state": "OP_RUNNING", "batches": [{"nodes": [{"node": "a"}]}]}') \
        == Operation("x", Spec(), OpState.RUNNING, [Batch([Step("a", StepState.UNSPECIFIED)])])


def test_the_record_round_trips_and_carries_its_version():
    raw = opmodel.encode(OLD_AS_NEW)
    assert json.loads(raw)["version"] == opmodel.VERSION
    assert opmodel.decode(raw) == OLD_AS_NEW


def test_a_controller_that_reads_protobuf_json_reads_the_new_record():
    old_reader = json_format.Parse(opmodel.encode(OLD_AS_NEW), pb.Operation(), ignore_unknown_fields=True)
    assert old_reader == json_format.Parse(OLD_RECORD, pb.Operation())
    assert old_reader == operation_message(OLD_AS_NEW)


def test_fields_from_a_newer_controller_are_ignored_but_a_newer_version_is_refused():
    data = json.loads(opmodel.encode(OLD_AS_NEW))
    data["priority"] = 3
    data["spec"]["window"] = "night"
    data["batches"][0]["nodes"][0]["attempt"] = 2
    assert opmodel.decode(json.dumps(data).encode()) == OLD_AS_NEW
    data["version"] = opmodel.VERSION + 1
    with pytest.raises(Unavailable, match="newer controller"):
        opmodel.decode(json.dumps(data).encode())
    with pytest.raises(Unavailable):
        opmodel.decode(b"[1, 2]")


def test_spec_from_the_wire_and_defaults():
    spec = spec_of(pb.OperationSpec(group="web", batch=2, selector=pb.Assignment(nodes=["a"])))
    assert spec == Spec(group="web", batch=2, selector=Selector(("a",)))
    filled = spec.with_defaults()
    assert (filled.healthy_for_seconds, filled.timeout_seconds, filled.on_failure) == (
        opmodel.DEFAULT_HEALTHY_FOR, opmodel.DEFAULT_TIMEOUT, OnFailure.PAUSE)


# -- transitions -----------------------------------------------------------------------------------


def _op(*batches: list[str], kind: Kind = Kind.ROLLING_RESTART, on_failure: OnFailure = OnFailure.PAUSE,
        canary: int = 0, auto_revert: bool = False) -> Operation:
    spec = Spec(kind=kind, on_failure=on_failure, canary=canary, auto_revert=auto_revert, config_name="cfg")
    return Operation("op", spec, batches=[Batch([Step(n) for n in b]) for b in batches])


def test_transitions_leave_the_given_operation_alone():
    op = _op(["a"])
    paused, actions = transitions.apply(op, transitions.Pause())
    assert (paused.state, paused.reason, actions) == (OpState.PAUSED, "paused by an operator", [])
    assert op.state == OpState.RUNNING


def test_operator_requests_need_the_right_state():
    op = _op(["a"], ["b"])
    with pytest.raises(InvalidArgument, match="not paused"):
        transitions.apply(op, transitions.Resume())
    aborted, _ = transitions.apply(op, transitions.Abort("enough"))
    assert aborted.state == OpState.ABORTED and aborted.reason == "enough"
    assert [s.state for s in aborted.steps()] == [StepState.SKIPPED, StepState.SKIPPED]
    for event in (transitions.Pause(), transitions.Resume(), transitions.Abort()):
        with pytest.raises(InvalidArgument):
            transitions.apply(aborted, event)


def test_a_restart_step_goes_from_pending_to_done():
    op, _ = transitions.apply(_op(["a"]), transitions.StepStarted("a", 10.0, (5, 6)))
    assert (op.step("a").state, op.step("a").started_at, op.step("a").pids_before) == (StepState.ACTING, 10.0, [5, 6])
    op, _ = transitions.apply(op, transitions.StepWaiting("a"))
    assert op.step("a").state == StepState.WAITING
    op, _ = transitions.apply(op, transitions.StepHealthy("a", 11.0, 16.0))
    assert (op.step("a").state, op.step("a").healthy_at, op.step("a").done_at) == (StepState.DONE, 11.0, 16.0)
    assert transitions.pending_in_batch(op) == []
    op, _ = transitions.apply(op, transitions.BatchSettled())
    op, actions = transitions.apply(op, transitions.Finished())
    assert (op.state, op.current_batch, actions) == (OpState.SUCCEEDED, 1, [])


@pytest.mark.parametrize("on_failure, state", [
    (OnFailure.PAUSE, OpState.PAUSED), (OnFailure.ABORT, OpState.FAILED), (OnFailure.CONTINUE, OpState.RUNNING)])
def test_a_failed_step_follows_on_failure(on_failure, state):
    op, actions = transitions.apply(_op(["a", "b"], ["c"], on_failure=on_failure),
                                    transitions.StepFailed("a", "boom", 3.0))
    assert op.state == state and actions == []
    assert (op.step("a").state, op.step("a").error, op.step("a").done_at) == (StepState.FAILED, "boom", 3.0)
    assert op.reason == ("" if state == OpState.RUNNING else "a: boom")
    skipped = state == OpState.FAILED
    assert op.step("c").state == (StepState.SKIPPED if skipped else StepState.PENDING)


def test_resume_retries_the_failed_nodes_of_the_batch_it_stopped_in():
    op, _ = transitions.apply(_op(["a", "b"]), transitions.StepFailed("a", "boom", 3.0))
    op, _ = transitions.apply(op, transitions.Resume())
    assert op.state == OpState.RUNNING and op.reason == ""
    assert (op.step("a").state, op.step("a").error, op.step("a").retries) == (StepState.PENDING, "", 1)
    assert transitions.pending_in_batch(op) == ["a", "b"]


@pytest.mark.parametrize("event, state", [(transitions.Abort("bad build"), OpState.ABORTED),
                                          (transitions.StepFailed("a", "boom", 1.0), OpState.FAILED)])
def test_a_rollout_that_ends_unfinished_is_withdrawn(event, state):
    op = _op(["a"], ["b"], kind=Kind.CONFIG_ROLLOUT, on_failure=OnFailure.ABORT)
    ended, actions = transitions.apply(op, event)
    assert ended.state == state and isinstance(actions[-1], transitions.WithdrawRollout)
    assert actions[-1].why.startswith(f"operation op {state.word}: ")
    with pytest.raises(InvalidArgument, match="revision 0 of cfg was withdrawn, push it again"):
        transitions.apply(ended, transitions.Resume())
    # a rolling restart has nothing to withdraw
    restart, actions = transitions.apply(_op(["a"], on_failure=OnFailure.ABORT), event)
    assert restart.state == state and actions == []


def test_a_rollout_reverts_a_failed_node_and_ends_its_pin_when_finished():
    op = _op(["a"], ["b"], kind=Kind.CONFIG_ROLLOUT, auto_revert=True)
    failed, actions = transitions.apply(op, transitions.StepFailed("a", "not applied", 1.0))
    assert failed.step("a").state == StepState.REVERTED and actions == [transitions.RevertNode("a")]
    done, actions = transitions.apply(op, transitions.Finished())
    assert done.state == OpState.SUCCEEDED and actions == [transitions.EndRollout()]


def test_a_canary_batch_pauses_before_the_rest():
    op, _ = transitions.apply(_op(["a"], ["b", "c"], canary=1), transitions.BatchSettled())
    assert op.state == OpState.PAUSED and op.current_batch == 1 and "canary on a" in op.reason
    later, _ = transitions.apply(transitions.apply(op, transitions.Resume())[0], transitions.BatchSettled())
    assert later.state == OpState.RUNNING and later.current_batch == 2


def test_a_restart_is_sent_again_only_if_it_never_happened():
    assert transitions.restart_needed(Step("a"), {1, 2})
    acting = Step("a", StepState.ACTING, pids_before=[1, 2])
    assert transitions.restart_needed(acting, {1, 2})  # still the old pids: the restart was lost
    assert not transitions.restart_needed(acting, {3, 4})  # new pids: it happened
    assert not transitions.restart_needed(acting, set())  # nothing runs: do not start it again
    assert not transitions.restart_needed(Step("a", StepState.WAITING, pids_before=[1]), {1})


def test_a_retried_restart_is_not_sent_again_when_the_lost_one_happened():
    """Found by the controller soak: a restart sent, the link cut before its answer, the step
    failed; the operator resumed and the node was restarted a second time in one operation."""
    op, _ = transitions.apply(_op(["a"]), transitions.StepStarted("a", 1.0, (1, 2)))
    op, _ = transitions.apply(op, transitions.StepFailed("a", "restart failed: unreachable", 2.0))
    retried, _ = transitions.apply(op, transitions.Resume())
    step = retried.step("a")
    assert step.state == StepState.PENDING and step.retries == 1 and step.pids_before == [1, 2]
    assert not transitions.restart_needed(step, {3, 4})  # new pids, none from before: it happened
    assert transitions.restart_needed(step, {1, 2})  # the old ones still run: it did not
    assert transitions.restart_needed(step, {1, 3})  # partly: restart the group
    assert transitions.restart_needed(step, set())  # nothing runs (gave up): a retry restarts
    assert transitions.restart_needed(Step("a"), {3, 4})  # a first attempt always sends


# -- errors as status codes ------------------------------------------------------------------------


def test_each_error_has_one_status_code():
    assert status_of(NotFound("x")) == (grpc.StatusCode.NOT_FOUND, "x")
    assert status_of(InvalidArgument("x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(planning.PlanError("x"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_of(Conflict("x"))[0] == grpc.StatusCode.ABORTED
    assert status_of(NotLeader("x"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(Unavailable("x"))[0] == grpc.StatusCode.UNAVAILABLE
    assert status_of(RuntimeError("down")) == (grpc.StatusCode.UNAVAILABLE, "etcd is unavailable: down")


class _Context:
    """What a servicer's failure path touches of a gRPC context."""

    def __init__(self) -> None:
        self.trailers: tuple = ()
        self.aborted: tuple = ()

    def set_trailing_metadata(self, trailers) -> None:
        self.trailers = trailers

    async def abort(self, code, details) -> None:
        self.aborted = (code, details)
        raise grpc.RpcError(details)


@dataclass
class _Leadership:
    is_leader: bool
    leader_address: str


@pytest.mark.parametrize("leadership, trailers, details", [
    (_Leadership(False, "10.0.0.2:7400"), (("fleetvisor-leader", "10.0.0.2:7400"),),
     "stopped leading; the leader is at 10.0.0.2:7400"),
    (_Leadership(False, ""), (), "stopped leading"),
])
def test_a_lost_leadership_names_the_leader_for_fleetctl_to_retry_there(leadership, trailers, details):
    fleet = SimpleNamespace(id="ctl-1")
    servicer = ControllerServicer(fleet, leadership, None, command_timeout=5)  # type: ignore[arg-type]
    context = _Context()
    with pytest.raises(grpc.RpcError):
        asyncio.run(servicer._fail(context, NotLeader("stopped leading")))
    assert context.aborted == (grpc.StatusCode.FAILED_PRECONDITION, details)
    # the controller's own answer says so (agents tell it from a failure to reach it), then the leader
    assert context.trailers == (("fleetvisor-controller", "ctl-1"), *trailers)
    assert leader_redirect(context.aborted[0], context.trailers) == (leadership.leader_address or None)


def test_a_new_operation_is_planned_with_the_defaults_filled_in():
    op = new_operation(Spec(kind=Kind.ROLLING_RESTART, group="web", max_unavailable="50%"), ["d", "c", "b", "a"],
                       "me", "why", now=7.0, op_id="op-1")
    assert [[s.node for s in b.nodes] for b in op.batches] == [["a", "b"], ["c", "d"]]
    assert all(s.state == StepState.PENDING for s in op.steps())
    assert (op.id, op.state, op.created_at, op.updated_at) == ("op-1", OpState.RUNNING, 7.0, 7.0)
    assert op.spec.on_failure == OnFailure.PAUSE and op.spec.timeout_seconds == opmodel.DEFAULT_TIMEOUT
    with pytest.raises(InvalidArgument):
        new_operation(Spec(canary=4), ["a", "b"], "me", "", now=0.0, op_id="x")


def test_a_controller_past_its_heartbeat_rate_stretches_interval_and_ttl_alike():
    assert pace(10, 10, 300) == (10 / 3, 10)  # few nodes: a third of the TTL
    assert pace(1000, 10, 300) == (10 / 3, 10)  # exactly the rate
    assert pace(5000, 10, 300) == (5000 / 300, 3 * 5000 / 300)  # 300 a second, a TTL of three intervals
    assert pace(5000, 10, 0) == (10 / 3, 10)  # 0: no bound
