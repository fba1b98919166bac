"""How a controller shows the nodes another controller follows (controller/peerlinks.py): the
owner's report while its stream works, and not current, saying why, as soon as it does not;
never old state as fresh."""

from __future__ import annotations

import asyncio
import time

import grpc

from fleetvisor.controller.livestate import NodeLinks
from fleetvisor.controller.peerlinks import PeerFeed, Peers
from fleetvisor.controller.records import ControllerRecord
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import peer_pb2 as ppb
from fleetvisor.v1 import peer_pb2_grpc as ppb_grpc
from tests.support import eventually, free_port


def report(pid: int, sessions: int = 1, run_id: str = "run-a") -> ppb.LiveStates:
    node = ppb.LiveNode(name="web-1", reachable=True, state_as_of=time.time(), run_id=run_id, sessions=sessions,
                        processes=[
        apb.ProcessInfo(name="app", group="app", namespec="app", state=apb.RUNNING, statename="RUNNING", pid=pid)])
    node.info.node = "web-1"
    return ppb.LiveStates(controller_id="ctl-2", resync=True, nodes=[node])


def test_state_from_the_owner_then_stale_when_its_stream_is_lost() -> None:
    async def run() -> None:
        links = NodeLinks(None, lambda: None)
        owners = {"web-1": "ctl-2"}
        links.sync({"web-1": "127.0.0.1:1"}, owners, "ctl-1")
        link = links.get("web-1")
        assert link is not None and not link.following
        peers = Peers("ctl-1", links, None, grace=60, on_gone=lambda: None)
        peers.sync({"ctl-1": ControllerRecord("ctl-1", "127.0.0.1:2")}, owners)  # ctl-2 not known yet
        assert not link.reachable and "ctl-2, which is not known here" in link.error

        feed = peers.feeds["ctl-2"] = PeerFeed(ControllerRecord("ctl-2", "127.0.0.1:3"), None, peers._updated,
                                                grace=60, on_gone=lambda: None)  # not started: fed by hand
        peers._resolve("web-1")
        assert not link.reachable and "cannot reach" in link.error
        feed._apply(report(pid=42))
        assert link.reachable and link.has_data and link.processes["app"].pid == 42 and not link.error

        feed.connected, feed.error = False, "unreachable (Socket closed)"
        lost = time.time()
        peers._updated(feed, list(feed.states))
        assert not link.reachable
        assert link.error == ("followed by controller ctl-2, which this controller cannot reach: "
                              "unreachable (Socket closed)")
        assert link.processes["app"].pid == 42, "what was known stays, shown not current"
        assert abs(link.state_as_of - lost) < 1

        feed._apply(report(pid=43))  # back: a fresh snapshot
        assert link.reachable and link.processes["app"].pid == 43
        feed._apply(ppb.LiveStates(controller_id="ctl-2", dropped=["web-1"]))  # it follows web-1 no more
        assert not link.reachable and "has not reported it yet" in link.error
        await links.close()
    asyncio.run(run())


def test_a_node_this_controller_owns_is_never_taken_from_a_peer() -> None:
    async def run() -> None:
        links = NodeLinks(None, lambda: None)
        links.sync({"web-1": "127.0.0.1:1"}, {"web-1": "ctl-1"}, "ctl-1")
        link = links.get("web-1")
        assert link is not None and link.following
        peers = Peers("ctl-1", links, None, grace=60, on_gone=lambda: None)
        peers.owners = {"web-1": "ctl-2"}  # another controller's view, for a moment
        feed = peers.feeds["ctl-2"] = PeerFeed(ControllerRecord("ctl-2", "127.0.0.1:3"), None, peers._updated,
                                                grace=60, on_gone=lambda: None)
        feed._apply(report(pid=42))
        assert "app" not in link.processes
        await links.close()
    asyncio.run(run())


class Refusing(ppb_grpc.PeerServiceServicer):
    """A controller whose guard refuses us (a certificate it does not take, say)."""

    async def FollowLive(self, request, context):  # type: ignore[no-untyped-def]
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "controller ctl-1 may not call FollowLive")
        yield ppb.LiveStates()


def test_a_peer_is_gone_at_once_when_its_port_refuses_and_after_the_grace_when_it_fails_otherwise() -> None:
    async def run() -> None:
        server = grpc.aio.server()
        ppb_grpc.add_PeerServiceServicer_to_server(Refusing(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        changes: list[str] = []
        refused = PeerFeed(ControllerRecord("ctl-2", f"127.0.0.1:{free_port()}"), None, lambda *_: None,
                           grace=30, on_gone=lambda: changes.append("refused"))
        failing = PeerFeed(ControllerRecord("ctl-3", f"127.0.0.1:{port}"), None, lambda *_: None,
                           grace=0.5, on_gone=lambda: changes.append("failing"))
        began = time.monotonic()
        refused.start()
        failing.start()
        try:
            await eventually(lambda: refused.gone, 5, "a refusing port to count as gone")
            assert not failing.gone and "may not call FollowLive" in failing.error
            await eventually(lambda: failing.gone, 5, "a failing stream to count as gone after the grace")
            assert time.monotonic() - began >= 0.5 and changes == ["refused", "failing"]
            assert "unreachable" in refused.error
        finally:
            await refused.close()
            await failing.close()
            await server.stop(None)
    asyncio.run(run())


def test_a_new_event_stream_at_the_owner_counts_here_as_one() -> None:
    """The leader's agent upgrade waits for the node's event stream to break and come back,
    also on a node another controller follows: its re-exec shows as one more session here."""
    async def run() -> None:
        links = NodeLinks(None, lambda: None)
        owners = {"web-1": "ctl-2"}
        links.sync({"web-1": "127.0.0.1:1"}, owners, "ctl-1")
        link = links.get("web-1")
        assert link is not None
        peers = Peers("ctl-1", links, None, grace=60, on_gone=lambda: None)
        peers.owners = owners
        feeds = {}
        for cid in ("ctl-2", "ctl-3"):
            feeds[cid] = peers.feeds[cid] = PeerFeed(ControllerRecord(cid, "127.0.0.1:3"), None, peers._updated,
                                                      grace=60, on_gone=lambda: None)
        feeds["ctl-2"]._apply(report(pid=42, sessions=4))
        before = link.sessions
        assert link.run_id == "run-a"
        feeds["ctl-2"]._apply(report(pid=42, sessions=4))
        assert link.sessions == before
        feeds["ctl-2"]._apply(report(pid=43, sessions=5, run_id="run-b"))  # the agent re-exec'd
        assert link.sessions == before + 1 and link.run_id == "run-b"
        peers.owners = {"web-1": "ctl-3"}  # moved: another controller's count
        feeds["ctl-3"]._apply(report(pid=43, sessions=1, run_id="run-b"))
        assert link.sessions == before + 1
        await links.close()
    asyncio.run(run())
