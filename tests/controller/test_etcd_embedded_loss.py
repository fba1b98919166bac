"""A controller whose embedded etcd dies: it restarts etcd and recovers, or exits non-zero in
one line; meanwhile its reads say they are stale and its writes say etcd is unavailable.

Everything is judged from real state: the etcd process, the controller's answers, the node's
heartbeats and the applied config, the agent's own main log.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from fleetvisor.v1 import controller_pb2 as pb

from tests.support import pid_alive, wait_for

from .etcd_harness import ETCD
from .fleet_harness import Agent, Controller, children_of, fleetctl, one_line_error, states

APP_V2 = """
[program:worker]
command=sleep 1000
startsecs=0
stopwaitsecs=2
"""


def etcd_pid(ctl: Controller) -> int:
    """The controller's embedded etcd: its only child."""
    found = wait_for(lambda: children_of(ctl.proc.pid), 10, "the controller's etcd child")
    assert len(found) == 1, found
    return found[0]


def endpoint_of(ctl: Controller) -> str:
    line = next(line for line in ctl.log().splitlines() if "embedded etcd at " in line)
    return line.split("embedded etcd at ", 1)[1].split()[0]


def pin(ctl: Controller, node: str) -> pb.NodeInfo:
    return ctl.stub.PinNode(pb.PinNodeRequest(node=node, reason="etcd test"), timeout=10)


def writes_again(ctl: Controller, node: str) -> bool:
    try:
        return pin(ctl, node).pinned
    except grpc.RpcError:
        return False


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH entry the controller finds `etcd` in first: the test can break it later."""
    path = tmp_path / "bin"
    path.mkdir()
    (path / "etcd").symlink_to(ETCD)
    monkeypatch.setenv("PATH", f"{path}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return path


def started(tmp_path: Path) -> tuple[Controller, Agent]:
    ctl = Controller(tmp_path, "embedded", node_ttl=3, leader_ttl=2)
    agent = Agent(tmp_path, "web-1", [ctl.address])
    wait_for(ctl.is_leader, 15, "the controller to lead")
    wait_for(lambda: (n := ctl.node("web-1")) is not None and n.up, 20, "web-1 up")
    return ctl, agent


def test_sigkilled_embedded_etcd_is_restarted_and_the_controller_recovers(tmp_path: Path, bin_dir: Path) -> None:
    ctl, agent = started(tmp_path)
    try:
        endpoint = endpoint_of(ctl)
        old = etcd_pid(ctl)
        os.kill(old, signal.SIGKILL)
        killed_at = time.time()
        ctl.wait_line("embedded etcd restarted", 30)
        new = etcd_pid(ctl)
        assert new != old and pid_alive(new) and not pid_alive(old)
        assert endpoint_of(ctl) == endpoint and f"restarted on {endpoint}" in ctl.log()  # same port

        # leadership back, writes served, heartbeats recorded again, reads current again
        wait_for(ctl.is_leader, 30, "the controller to lead again")
        wait_for(lambda: writes_again(ctl, "web-1"), 30, "a write (pin) to succeed")
        ctl.stub.UnpinNode(pb.PinNodeRequest(node="web-1"), timeout=10)
        wait_for(lambda: (n := ctl.node("web-1")) is not None and n.up and n.last_heartbeat > killed_at,
                 30, "web-1 to heartbeat again after the restart")
        assert not ctl.stub.ListNodes(pb.ListNodesRequest(), timeout=5).HasField("stale")
        assert not ctl.status().HasField("stale")

        # the mirror follows etcd (the write shows), and reconcile pushes a new config to the node
        ctl.stub.PushConfig(pb.PushConfigRequest(
            name="app", config_text=APP_V2, message="after etcd restart",
            assignment=pb.Assignment(nodes=["web-1"])), timeout=15)
        wait_for(lambda: states(ctl.status()).get("web-1:worker") == "RUNNING", 30,
                 "web-1 to run the config pushed after the restart")
        node = ctl.node("web-1")
        assert node.desired_revision and node.applied_revision == node.desired_revision
        assert ctl.proc.poll() is None
    finally:
        agent.stop()
        ctl.stop()


def test_unrestartable_etcd_is_stale_unavailable_then_exits(tmp_path: Path, bin_dir: Path) -> None:
    ctl, agent = started(tmp_path)
    try:
        endpoint = endpoint_of(ctl)
        broken = bin_dir / "etcd"
        broken.unlink()
        broken.write_text("#!/bin/sh\necho 'etcd: this binary is broken on purpose' >&2\nexit 1\n")
        broken.chmod(0o755)
        os.kill(etcd_pid(ctl), signal.SIGKILL)
        died_at = time.monotonic()

        # reads: stale, said so with the endpoint; "up" ends with the TTL though the copy keeps the key
        listing = wait_for(lambda: (r := ctl.stub.ListNodes(pb.ListNodesRequest(), timeout=5)).stale.etcd_unavailable
                           and r, 10, "ListNodes to say it is stale")
        assert endpoint in listing.stale.reason and listing.stale.as_of > 0
        status = ctl.status()
        assert status.stale.etcd_unavailable and endpoint in status.stale.reason
        node = wait_for(lambda: (n := ctl.node("web-1")) is not None and not n.up and n, 10,
                        "web-1 shown down once its last heartbeat is older than the TTL")
        assert time.time() - node.last_heartbeat > 3

        # fleetctl: the answer on stdout, one warning line on stderr
        for command in (("status",), ("nodes",)):
            result = fleetctl(ctl.address, *command)
            warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: stale:")]
            assert len(warnings) == 1 and endpoint in warnings[0], result.stderr
            assert "web-1" in result.stdout

        # a write: UNAVAILABLE, "etcd is unavailable at <endpoint>", not "no controller leads"
        with pytest.raises(grpc.RpcError) as info:
            pin(ctl, "web-1")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"etcd is unavailable at {endpoint}" in info.value.details()
        line = one_line_error(fleetctl(ctl.address, "nodes", "pin", "web-1", "-m", "x"))
        assert f"etcd is unavailable at {endpoint}" in line and "leads" not in line

        # the agent names what the controller answered, not a connection error of its own
        agent.daemon.wait_line(rf"controller {ctl.address} answered UNAVAILABLE: etcd is unavailable at "
                               + endpoint.replace(".", r"\."), 15)

        # then the controller gives up: non-zero, one clear line, within the bound
        code = ctl.proc.wait(60)
        assert code != 0
        assert time.monotonic() - died_at < 60
        final = [line for line in ctl.log().splitlines() if "could not be restarted" in line]
        assert len(final) == 1 and "exiting so that the service manager restarts the controller" in final[0]
        assert "broken on purpose" in final[0]
        assert "Traceback" not in ctl.log()
    finally:
        agent.stop()
        ctl.stop()
