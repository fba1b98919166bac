"""Several controllers on one etcd: one leads, followers redirect writes, failover, etcd restarts."""

from __future__ import annotations

import grpc
import pytest

from fleetvisor.v1 import controller_pb2 as pb

from tests.support import wait_for

from .fleet_harness import states, wait_status
from .test_fleet_config import WORKER, config_status, push


def leader_of(*controllers):
    leaders = [c for c in controllers if c.is_leader()]
    return leaders[0] if len(leaders) == 1 else None


def test_one_leads_followers_redirect_and_another_takes_over(fleet):
    a = fleet.controller("ctl-a")
    b = fleet.controller("ctl-b")
    fleet.agent("web-1", a, b)
    leader = wait_for(lambda: leader_of(a, b), 10, "exactly one leader")
    follower = b if leader is a else a
    info = follower.stub.GetLeader(pb.GetLeaderRequest(), timeout=5)
    assert not info.is_leader and info.leader_address == leader.address and info.leader_id == leader.name
    assert info.asyncio_tasks > 0  # the answering controller's own loop, at least the task serving this call
    for ctl in (a, b):  # both serve reads
        wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")

    with pytest.raises(grpc.RpcError) as info:
        push(follower, "workers", WORKER, nodes=["web-1"])
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(info.value.trailing_metadata())["fleetvisor-leader"] == leader.address

    leader.kill()  # no resignation: the lease has to expire
    wait_for(lambda: follower.is_leader(), 10, f"{follower.name} to lead after {leader.name} died")
    push(follower, "workers", WORKER, nodes=["web-1"])
    wait_status(follower, lambda s: states(s).get("web-1:worker") == "RUNNING", timeout=20,
                what="the new leader to reconcile the push")


def test_etcd_restart_leaves_agents_alone_and_watches_resume(fleet):
    ctl = fleet.controller()
    agent = fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    wait_for(ctl.is_leader, 10, "a leader")
    pid = agent.daemon.pid_of("app")
    fleet.etcd.restart()
    wait_for(ctl.is_leader, 20, "leadership again after etcd came back")
    push(ctl, "workers", WORKER, nodes=["web-1"])  # a write after the restart reaches the mirror
    wait_for(lambda: config_status(ctl)["web-1"].applied_revision == "workers@1", 20,
             "the push made after the etcd restart to be applied")
    assert agent.daemon.pid_of("app") == pid
    assert ctl.node("web-1").up


def test_writes_while_etcd_is_down_fail_in_one_line_and_store_nothing(fleet):
    ctl = fleet.controller()
    fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING")
    wait_for(ctl.is_leader, 10, "a leader")
    fleet.etcd.stop()
    with pytest.raises(grpc.RpcError) as info:
        push(ctl, "workers", WORKER, nodes=["web-1"])
    assert info.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE)
    assert len(info.value.details().splitlines()) == 1 and "Traceback" not in info.value.details()
    assert states(ctl.status()).get("web-1:app") == "RUNNING"  # reads still answer, from the cache
    fleet.etcd.start()
    wait_for(ctl.is_leader, 20, "leadership after etcd came back")
    assert not ctl.stub.ListConfigs(pb.ListConfigsRequest(), timeout=5).configs
