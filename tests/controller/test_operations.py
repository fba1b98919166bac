"""Rolling restarts and rollouts as durable operations, judged from the agents' own event streams."""

from __future__ import annotations

import threading
from collections import defaultdict

import grpc
import pytest

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as pb

from tests.support import wait_for

from .fleet_harness import states, wait_status

# The web group: two processes; a node fails its restart when the file `broken` exists in its dir.
WEB = """
[program:web]
command=sh -c 'test -e %(here)s/broken && exit 1; exec sleep 1000'
process_name=%(program_name)s_%(process_num)d
numprocs=2
startsecs=1
startretries=1
stopwaitsecs=2
"""


class EventLog:
    """Every process state change of every agent, as the agents themselves stamp them."""

    def __init__(self, agents) -> None:
        self.events: list[tuple[float, str, str, str]] = []  # (time, node, namespec, new state)
        self._lock = threading.Lock()
        self._channels = []
        self._snapshots: list[threading.Event] = []
        self.broken: dict[str, str] = {}  # node -> why its stream ended
        for agent in agents:
            channel = grpc.insecure_channel(agent.address)
            self._channels.append(channel)
            stream = apb_grpc.AgentServiceStub(channel).WatchEvents(apb.WatchEventsRequest())
            self._snapshots.append(threading.Event())
            threading.Thread(target=self._read, args=(agent.node, stream, self._snapshots[-1]), daemon=True).start()
        # each stream opens with a snapshot: from then on no change is missed (on a loaded machine
        # the first restart could otherwise come before a stream is open)
        wait_for(lambda: all(s.is_set() for s in self._snapshots), 20, "every agent's event stream open")

    def _read(self, node, stream, opened: threading.Event) -> None:
        try:
            for event in stream:
                opened.set()
                if event.WhichOneof("kind") == "process_state":
                    proc = event.process_state.process
                    with self._lock:
                        self.events.append((event.time, node, proc.namespec, proc.statename))
        except grpc.RpcError as error:
            self.broken[node] = f"{error.code().name}: {error.details()}"

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def of_group(self, group: str) -> list[tuple[float, str, str, str]]:
        with self._lock:
            return sorted(e for e in self.events if e[2].startswith(f"{group}:"))

    def max_nodes_down(self, group: str) -> int:
        """The most nodes that had some process of `group` not RUNNING at the same instant."""
        down: dict[str, set[str]] = defaultdict(set)
        worst = 0
        for _, node, spec, state in self.of_group(group):
            (down[node].discard if state == "RUNNING" else down[node].add)(spec)
            worst = max(worst, sum(1 for specs in down.values() if specs))
        return worst

    def restarts(self, group: str) -> dict[str, int]:
        """How many times each node's group was started (STARTING per process, per node)."""
        counts: dict[str, int] = defaultdict(int)
        for _, node, spec, state in self.of_group(group):
            if state == "STARTING" and spec.endswith("_0"):
                counts[node] += 1
        return dict(counts)

    def first_start(self, group: str) -> dict[str, float]:
        starts: dict[str, float] = {}
        for when, node, spec, state in self.of_group(group):
            if state == "STARTING":
                starts.setdefault(node, when)
        return starts


@pytest.fixture
def web_fleet(fleet):
    ctl = fleet.controller()
    for i in range(1, 5):
        fleet.agent(f"n{i}", ctl, labels="role=web", programs=WEB)
    wait_status(ctl, lambda s: len(states(s)) == 8 and all(v == "RUNNING" for v in states(s).values()),
                timeout=30, what="eight web processes running")
    wait_for(ctl.is_leader, 10, "a leader")
    return ctl


def start(ctl, group="web", batch=0, max_unavailable="", healthy_for=1.0, timeout=20.0, on_failure=pb.PAUSE,
          dry_run=False, nodes=()):
    spec = pb.OperationSpec(kind=pb.ROLLING_RESTART, group=group, batch=batch, max_unavailable=max_unavailable,
                            healthy_for_seconds=healthy_for, timeout_seconds=timeout, on_failure=on_failure,
                            selector=pb.Assignment(nodes=list(nodes)))
    return ctl.stub.StartOperation(pb.StartOperationRequest(spec=spec, message="test", dry_run=dry_run), timeout=10)


def wait_op(ctl, op_id, states_wanted, timeout=60.0):
    holder = []

    def done():
        holder[:] = [ctl.stub.GetOperation(pb.GetOperationRequest(id=op_id), timeout=5)]
        return holder[0].state in states_wanted
    try:
        wait_for(done, timeout, f"operation {op_id} to reach {states_wanted}")
    except AssertionError as exc:  # say where it stopped, and what the controller said
        last = holder[0] if holder else None
        where = f"{pb.OperationState.Name(last.state)} {last.reason!r}" if last else "never read"
        raise AssertionError(f"{exc}; it is {where}\n{ctl.log()[-4000:]}") from None
    return holder[0]


def plan_of(op):
    return [[s.node for s in b.nodes] for b in op.batches]


def test_rolling_restart_follows_the_plan_and_never_exceeds_max_unavailable(fleet, web_fleet):
    ctl = web_fleet
    log = EventLog(fleet.agents)
    try:
        planned = start(ctl, batch=2, dry_run=True)
        assert planned.id == "" and plan_of(planned) == [["n1", "n2"], ["n3", "n4"]]
        op = start(ctl, batch=2)
        assert op.id and plan_of(op) == plan_of(planned)
        done = wait_op(ctl, op.id, {pb.OP_SUCCEEDED})
        assert all(s.state == pb.STEP_DONE for b in done.batches for s in b.nodes)
        wait_for(lambda: log.restarts("web") == {"n1": 1, "n2": 1, "n3": 1, "n4": 1}, 10,
                 "every node restarted exactly once")
        assert log.max_nodes_down("web") <= 2
        first = log.first_start("web")
        assert max(first["n1"], first["n2"]) < min(first["n3"], first["n4"]), "batch 2 began before batch 1"
        # the second batch waited for the first to be healthy for healthy_for
        healthy = max(s.healthy_at for s in done.batches[0].nodes)
        assert min(s.started_at for s in done.batches[1].nodes) >= healthy + 1.0 - 0.05
    finally:
        log.close()


def test_failing_node_pauses_then_resume_and_abort(fleet, web_fleet):
    ctl = web_fleet
    broken = next(a for a in fleet.agents if a.node == "n2")
    (broken.dir / "broken").write_text("")
    op = start(ctl, batch=1, timeout=15)
    paused = wait_op(ctl, op.id, {pb.OP_PAUSED})
    assert paused.reason.startswith("n2: ") and paused.current_batch == 1
    assert [s.state for s in paused.batches[1].nodes] == [pb.STEP_FAILED]
    assert all(s.state == pb.STEP_PENDING for b in paused.batches[2:] for s in b.nodes)

    (broken.dir / "broken").unlink()  # the operator fixes the node, then resumes: n2 is retried
    ctl.stub.ResumeOperation(pb.GetOperationRequest(id=op.id), timeout=10)
    wait_for(lambda: ctl.stub.GetOperation(pb.GetOperationRequest(id=op.id), timeout=5).current_batch >= 2, 30,
             "the resumed operation to move past n2")
    aborted = ctl.stub.AbortOperation(pb.GetOperationRequest(id=op.id, reason="enough"), timeout=10)
    assert aborted.state == pb.OP_ABORTED and aborted.reason == "enough"
    final = wait_op(ctl, op.id, {pb.OP_ABORTED})
    assert any(s.state == pb.STEP_SKIPPED for s in final.batches[-1].nodes)
    with pytest.raises(grpc.RpcError) as info:
        ctl.stub.ResumeOperation(pb.GetOperationRequest(id=op.id), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_on_failure_abort_stops_the_operation(fleet, web_fleet):
    ctl = web_fleet
    (next(a for a in fleet.agents if a.node == "n1").dir / "broken").write_text("")
    op = start(ctl, batch=1, timeout=15, on_failure=pb.ABORT)
    failed = wait_op(ctl, op.id, {pb.OP_FAILED})
    assert failed.reason.startswith("n1: ")
    assert all(s.state == pb.STEP_SKIPPED for b in failed.batches[1:] for s in b.nodes)


@pytest.mark.slow
def test_leader_killed_mid_operation_the_other_completes_it_once_per_node(fleet, web_fleet):
    first = web_fleet
    second = fleet.controller("ctl-2")
    log = EventLog(fleet.agents)
    try:
        op = start(first, batch=1, healthy_for=2.0)
        wait_for(lambda: first.stub.GetOperation(pb.GetOperationRequest(id=op.id), timeout=5).current_batch >= 1,
                 30, "the first batch done")
        first.kill()
        done = wait_op(second, op.id, {pb.OP_SUCCEEDED}, timeout=90)
        assert done.controller_id == "ctl-2"
        try:
            wait_for(lambda: len(log.restarts("web")) == 4, 10, "all four nodes restarted")
        except AssertionError:  # what to look at: the agents' restarts against the steps' record
            steps = [(s.node, pb.StepState.Name(s.state), list(s.pids_before)) for b in done.batches for s in b.nodes]
            raise AssertionError(f"restarts seen {log.restarts('web')}; streams ended {log.broken}; "
                                 f"steps {steps}") from None
        assert log.restarts("web") == {"n1": 1, "n2": 1, "n3": 1, "n4": 1}
        assert log.max_nodes_down("web") <= 1
    finally:
        log.close()


def test_bad_operations_are_refused(web_fleet):
    ctl = web_fleet
    for kwargs, code in (({"group": "nosuch"}, grpc.StatusCode.NOT_FOUND),
                         ({"nodes": ["nosuch"]}, grpc.StatusCode.NOT_FOUND),
                         ({"max_unavailable": "0%"}, grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as info:
            start(ctl, **kwargs)
        assert info.value.code() == code, kwargs
    assert not ctl.stub.ListOperations(pb.ListOperationsRequest(all=True), timeout=5).operations


EXTRA = """
[program:extra]
command=sh -c 'test -e %(here)s/broken-{generation} && exit 1; exec sleep 1000'
startsecs=1
startretries=1
"""


def push(ctl, text, *, rollout=None):
    request = pb.PushConfigRequest(name="extra", config_text=text, message="test",
                                   assignment=pb.Assignment(labels={"role": "web"}))
    if rollout is not None:
        request.rollout.CopyFrom(rollout)
    return ctl.stub.PushConfig(request, timeout=15)


def applied(ctl) -> dict[str, str]:
    return {n.node: n.applied_revision for n in ctl.stub.ConfigStatus(pb.ConfigStatusRequest(), timeout=5).nodes}


def test_canary_rollout_pauses_then_promote_reaches_every_node(web_fleet):
    ctl = web_fleet
    answer = push(ctl, EXTRA.format(generation=1),
                  rollout=pb.OperationSpec(batch=2, canary=1, healthy_for_seconds=1.0, timeout_seconds=20))
    assert answer.operation_id
    paused = wait_op(ctl, answer.operation_id, {pb.OP_PAUSED})
    assert "canary on n1" in paused.reason
    assert plan_of(paused) == [["n1"], ["n2", "n3"], ["n4"]]
    assert applied(ctl) == {"n1": "extra@1", "n2": "", "n3": "", "n4": ""}
    assert states(ctl.status("n1")).get("n1:extra") == "RUNNING"

    ctl.stub.ResumeOperation(pb.GetOperationRequest(id=answer.operation_id), timeout=10)
    wait_op(ctl, answer.operation_id, {pb.OP_SUCCEEDED})
    wait_for(lambda: set(applied(ctl).values()) == {"extra@1"}, 10, "every node at extra@1")
    # the rollout is over: the next plain push goes everywhere at once
    push(ctl, EXTRA.format(generation=2))
    wait_for(lambda: set(applied(ctl).values()) == {"extra@2"}, 20, "every node at extra@2")


def test_auto_revert_puts_a_failed_node_back_on_the_previous_revision(fleet, web_fleet):
    ctl = web_fleet
    push(ctl, EXTRA.format(generation=1))
    wait_for(lambda: set(applied(ctl).values()) == {"extra@1"}, 20, "every node at extra@1")
    (next(a for a in fleet.agents if a.node == "n2").dir / "state" / "broken-2").write_text("")
    answer = push(ctl, EXTRA.format(generation=2),
                  rollout=pb.OperationSpec(batch=1, auto_revert=True, healthy_for_seconds=1.0, timeout_seconds=20))
    paused = wait_op(ctl, answer.operation_id, {pb.OP_PAUSED})
    assert paused.reason.startswith("n2: ")
    assert paused.batches[1].nodes[0].state == pb.STEP_REVERTED
    wait_for(lambda: applied(ctl) == {"n1": "extra@2", "n2": "extra@1", "n3": "extra@1", "n4": "extra@1"}, 20,
             "n2 back on extra@1, n1 on extra@2, the rest untouched")
    wait_status(ctl, lambda s: states(s).get("n2:extra") == "RUNNING", what="n2's extra running again")
    with pytest.raises(grpc.RpcError) as info:  # no other push while the rollout holds the config
        push(ctl, EXTRA.format(generation=3))
    assert "in progress" in info.value.details()
    ctl.stub.AbortOperation(pb.GetOperationRequest(id=answer.operation_id), timeout=10)
    wait_op(ctl, answer.operation_id, {pb.OP_ABORTED})
    # the aborted rollout is withdrawn (issue 14): n1 goes back to extra@1 too, and it no
    # longer holds up a push
    wait_for(lambda: set(applied(ctl).values()) == {"extra@1"}, 20, "every node back at extra@1")
    history = ctl.stub.ConfigHistory(pb.ConfigHistoryRequest(name="extra"), timeout=5)
    assert history.current_revision == 1 and [r.withdrawn != "" for r in history.revisions] == [False, True]
    push(ctl, EXTRA.format(generation=3))
    wait_for(lambda: set(applied(ctl).values()) == {"extra@3"}, 20, "every node at extra@3")
