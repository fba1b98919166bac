"""Heartbeats keep etcd flat: a node's heartbeat renews its lease, and is written to etcd only
when something changed (a new lease, another controller, what the node says of itself)."""

from __future__ import annotations

import json
import time
import urllib.request

from fleetvisor.v1 import controller_pb2 as pb
from tests.support import wait_for


def etcd_revision(endpoint: str) -> int:
    """The store's revision, from etcd's own JSON gateway: it moves with every write."""
    request = urllib.request.Request(f"http://{endpoint}/v3/kv/range", data=json.dumps({"key": "AA=="}).encode(),
                                     method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        return int(json.loads(reply.read())["header"]["revision"])


def test_steady_heartbeats_write_nothing_to_etcd(fleet):
    ctl = fleet.controller()
    names = ["web-1", "web-2"]
    agents = [fleet.agent(name, ctl) for name in names]
    wait_for(lambda: all((n := ctl.node(name)) is not None and n.up for name in names), 20, "both nodes up")
    wait_for(lambda: ctl.is_leader(), 20, "the controller to lead")

    def beats_after(since: float) -> bool:
        return all((n := ctl.node(name)) is not None and n.last_heartbeat > since for name in names)

    # settle: registration, the leader's first reconcile records
    settled = time.time() + 1.5
    wait_for(lambda: beats_after(settled), 20, "heartbeats going on")
    before = etcd_revision(fleet.etcd.endpoint)
    mark = max(ctl.node(name).last_heartbeat for name in names)
    # node TTL 3 s: a heartbeat a second; wait for at least three more of each node
    wait_for(lambda: beats_after(mark + 3), 20, "three more heartbeats of each node")
    assert etcd_revision(fleet.etcd.endpoint) == before, "a steady heartbeat wrote to etcd"
    assert all(ctl.node(name).up for name in names)

    # a node that goes quiet is shown down once its lease expires (the key goes with it), with
    # the time of its last heartbeat
    agents[1].stop()
    stopped_at = time.time()
    wait_for(lambda: not ctl.node("web-2").up, 20, "web-2 shown down after its lease expired")
    down = ctl.node("web-2")
    assert stopped_at - 5 < down.last_heartbeat <= stopped_at and ctl.node("web-1").up


def test_past_the_heartbeat_rate_nodes_are_told_to_beat_less_often_and_kept_up_for_longer(fleet):
    """--max-heartbeat-rate 2 with a node TTL of 2 s: the first node is told a third of the
    TTL; once four nodes heartbeat here, each new answer says every 2 s (4 nodes / 2 a second)
    with a TTL of 6 s, and a node told so stays up past the node TTL and is down after its own."""
    ctl = fleet.controller(node_ttl=2, extra=("--max-heartbeat-rate", "2"))

    def beat(name: str) -> pb.HeartbeatResponse:
        return ctl.stub.Heartbeat(pb.HeartbeatRequest(node=name, address="127.0.0.1:1", agent_run_id=name),
                                  timeout=5)

    first = beat("n-1")
    assert (round(first.interval_seconds, 2), first.ttl_seconds) == (0.67, 2)
    for name in ("n-2", "n-3"):
        beat(name)
    told = beat("n-4")
    assert (told.interval_seconds, told.ttl_seconds) == (2, 6)
    silent_from = time.time()
    wait_for(lambda: not ctl.node("n-1").up, 10, "n-1, told 2 s, down once silent for them")
    assert time.time() - silent_from < 6 and ctl.node("n-4").up, "n-4 was told 6 s"
    wait_for(lambda: not ctl.node("n-4").up, 15, "n-4 down once silent for its 6 s")
    assert time.time() - silent_from >= 5.5
