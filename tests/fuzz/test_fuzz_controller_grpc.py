"""ControllerService against a real controller, a real etcd and two agents: random requests and
raw bytes for every method.

Every call ends within its bound with a status that names the problem (never UNKNOWN or a
traceback), the controller keeps answering, a refused call leaves the fleet's desired state in
etcd as it was, and a refused write is audited (in etcd, or - for the refusals the audit log
rate-limits per caller - in the controller's log).
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from aetcd import rpc
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetvisor.controller import records
from fleetvisor.v1 import controller_pb2 as pb
from tests.controller.etcd_harness import EtcdServer
from tests.controller.fleet_harness import CLUSTER, Agent, Controller, states, wait_status
from tests.support import wait_for

from .fleet_strategies import (
    CONFIG_TEXT,
    DOUBLES,
    SIGNALS,
    TEXT,
    Method,
    Outcome,
    budget,
    call,
    check_outcome,
    corrupt,
    message,
    methods,
    requests,
)

METHODS = methods(pb.DESCRIPTOR.services_by_name["ControllerService"])
WRITES = {"PushConfig", "RollbackConfig", "Control", "StartOperation", "PauseOperation", "ResumeOperation",
          "AbortOperation", "SetPolicy", "DeletePolicy", "ForgetNode", "RevokeCertificate", "AdoptNode", "PinNode",
          "UnpinNode"}
# the fleet's desired state: what a refused call must leave alone (nodes/, members/, reconcile/ and
# audit/ move with heartbeats, pushes and the audit itself)
DESIRED = (records.CONFIGS, records.ASSIGNMENTS, records.OPS, records.ACL, records.REVOKED, records.OVERRIDES,
           records.CLUSTER_ID)
NAMES = ["web-1", "web-2", "web-*", "*", "web-1:app", "*:app", "*:*", "web-1:*", "app", "fz", "all", "role", "web",
         "HUP", "KILL", "4a3f09c1"]
# An agent's address is dialled back: keep every one the fuzz invents on loopback.
ADDRESSES = st.one_of(st.sampled_from(["", "127.0.0.1:1", "0.0.0.0:2", "[::]:3", ":4", "127.0.0.1", "[::1]:5",
                                       "127.0.0.1:99999", "127.0.0.1:-1"]),
                      TEXT.map(lambda t: "127.0.0.1:" + t))
HINTS = {"signal": SIGNALS, "config_text": CONFIG_TEXT, "address": ADDRESSES,
         "max_unavailable": st.sampled_from(["", "1", "0", "50%", "101%", "-1", "x", "1e9", "%"])}
PROGRAMS = st.sampled_from(["[program:app]\ncommand=sleep 1000\nstartsecs=0\n",
                            "[program:fz]\ncommand=sleep 1000\nstartsecs=0\n", "[program:fz]\ncommand=sleep 1\n"])
SELECTORS = st.sampled_from([pb.Assignment(nodes=["web-1"]), pb.Assignment(labels={"role": "web"}),
                             pb.Assignment(nodes=["web-1", "web-2"]), pb.Assignment()])
SPECS = st.builds(pb.OperationSpec, kind=st.sampled_from([pb.ROLLING_RESTART, pb.CONFIG_ROLLOUT]),
                  group=st.sampled_from(["app", "fz"]), selector=SELECTORS, batch=st.integers(-2, 3),
                  max_unavailable=HINTS["max_unavailable"], healthy_for_seconds=DOUBLES,
                  timeout_seconds=DOUBLES, on_failure=st.integers(0, 3), canary=st.integers(-1, 3),
                  auto_revert=st.booleans(), config_revision=st.integers(-1, 3), previous_revision=st.integers(-1, 3))
# Requests shaped like the real ones, so that the writes get past their first checks and do work.
SHAPED = {
    "PushConfig": st.builds(pb.PushConfigRequest, name=st.sampled_from(["fz", "app"]), config_text=PROGRAMS,
                            assignment=SELECTORS, message=TEXT,
                            rollout=st.one_of(st.none(), SPECS)),
    "StartOperation": st.builds(pb.StartOperationRequest, spec=SPECS, message=TEXT, dry_run=st.booleans()),
    "Control": st.builds(pb.ControlRequest, action=st.integers(1, 4),
                         patterns=st.lists(st.sampled_from(["web-1:app", "*:app", "web-*", "*:*", "all"]), max_size=2),
                         labels=st.sampled_from([{}, {"role": "web"}, {"role": "db"}]), signal=SIGNALS,
                         wait=st.booleans(), node_timeout_seconds=DOUBLES),
    "RollbackConfig": st.builds(pb.RollbackConfigRequest, name=st.sampled_from(["fz", "app"]),
                                to_revision=st.integers(-1, 4), message=TEXT),
}
EXAMPLES = {"TailLog": 8, "WatchStatus": 8, "WatchOperation": 8, "Heartbeat": 20, "PushConfig": 30,
            "Control": 25, "StartOperation": 25, "RollbackConfig": 20}
SETTLE = 60.0
OPS_QUIET = 1.0  # seconds the operation records must stay as they are (see settle)
# A request above gRPC's receive limit (4 MiB) is refused by the transport, before any interceptor
# or the servicer sees it: nothing in the controller can audit it.
TRANSPORT_LIMIT = "SERVER: Received message larger than max"


class FuzzFleet:
    def __init__(self, base: Path) -> None:
        self.etcd = EtcdServer(base)
        self.etcd.start()
        self.ctl = Controller(base, self.etcd.endpoint)
        self.agents = [Agent(base, name, [self.ctl.address], labels="role=web") for name in ("web-1", "web-2")]
        wait_status(self.ctl, lambda s: len(states(s)) == 2 and all(n.node.reachable for n in s.nodes),
                    what="two live agents")
        self.channel = grpc.insecure_channel(self.ctl.address)
        self.etcd_channel = grpc.insecure_channel(self.etcd.endpoint,
                                                  options=[("grpc.max_receive_message_length", 1 << 28)])
        self.kv = rpc.KVStub(self.etcd_channel)
        self.prefix = records.prefix_of(CLUSTER).encode()
        self.ops_seen: dict[bytes, bytes] = {}
        self.ops_changed = 0.0  # when the operation records were last seen to change (settle)

    def keys(self, sub: str) -> dict[bytes, bytes]:
        start = self.prefix + sub.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        return {kv.key: kv.value for kv in self.kv.Range(rpc.RangeRequest(key=start, range_end=end), timeout=5).kvs}

    def desired(self) -> dict[bytes, bytes]:
        return {k: v for sub in DESIRED for k, v in self.keys(sub).items()}

    def audited(self) -> int:
        start = self.prefix + records.AUDIT.encode()
        request = rpc.RangeRequest(key=start, range_end=start[:-1] + b"0", count_only=True)
        return int(self.kv.Range(request, timeout=5).count)

    def settle(self) -> None:
        """Until no operation runs, no rollout is under way, and the operation records stopped
        changing: what an accepted call started would otherwise go on changing etcd under the
        next example. Live ones are aborted; a step in flight when its operation was aborted
        (an agent's re-exec, say) still records how it ended, so the records must be quiet for
        a moment too."""
        stub = self.ctl.stub

        def quiet() -> bool:
            live = stub.ListOperations(pb.ListOperationsRequest(), timeout=5).operations
            for op in live:
                try:
                    stub.AbortOperation(pb.GetOperationRequest(id=op.id, reason="fuzz settle"), timeout=5)
                except grpc.RpcError:
                    pass  # it ended meanwhile
            rollouts = [r for r in self.keys(records.ASSIGNMENTS).values()
                        if (a := records.decode(records.AssignmentRecord, r)) and a.rollout]
            ops = self.keys(records.OPS)
            if ops != self.ops_seen:  # kept between examples: a quiet fleet waits for nothing
                self.ops_seen, self.ops_changed = ops, time.monotonic()
            return not live and not rollouts and time.monotonic() - self.ops_changed >= OPS_QUIET
        wait_for(quiet, SETTLE, "no live operation or rollout, and operation records unchanged", interval=0.1)

    def exercise(self, method: Method, raw: bytes) -> Outcome:
        self.settle()
        before, audited, logged = self.desired(), self.audited(), self.ctl.log().count(f"refused {method.name} ")
        outcome = call(self.channel, method, raw)
        check_outcome(method.name, outcome)
        assert self.ctl.stub.GetLeader(pb.GetLeaderRequest(), timeout=5).is_leader
        if not outcome.refused:
            return outcome
        assert self.desired() == before, f"{method.name} was refused ({outcome.details}) but changed etcd"
        if _is_write(method, raw) and not outcome.details.startswith(TRANSPORT_LIMIT):
            wait_for(lambda: self.audited() > audited or self.ctl.log().count(f"refused {method.name} ") > logged,
                     5, f"the refused {method.name} ({outcome.code.name}: {outcome.details}) to be audited")
        return outcome

    def close(self) -> None:
        self.channel.close()
        self.etcd_channel.close()
        for agent in self.agents:
            agent.stop()
        self.ctl.stop()
        self.etcd.kill()
        assert "Traceback" not in self.ctl.log(), self.ctl.log()


def _is_write(method: Method, raw: bytes) -> bool:
    """A dry run (of an operation, or of a push) is a plan, not a write."""
    planned = {"StartOperation": pb.StartOperationRequest, "PushConfig": pb.PushConfigRequest}.get(method.name)
    if planned is not None:
        try:
            return not planned.FromString(raw).dry_run
        except DecodeError:
            return True  # refused unread: as a write, to be safe
    return method.name in WRITES


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = FuzzFleet(tmp_path_factory.mktemp("fuzz-fleet"))
    yield f
    f.close()


def _examples(method: Method, share: float = 1.0) -> int:
    return budget(max(2, round(EXAMPLES.get(method.name, 14) * share)))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_random_requests(fleet, method):
    @settings(max_examples=_examples(method))
    @given(st.one_of(requests(method.request, HINTS, NAMES), SHAPED.get(method.name, st.nothing())))
    def check(request):
        fleet.exercise(method, request.SerializeToString())
    check()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_raw_bytes(fleet, method):
    @settings(max_examples=_examples(method, 0.6))
    @given(corrupt(message(method.request, HINTS, NAMES)))
    def check(raw):
        fleet.exercise(method, raw)
    check()
