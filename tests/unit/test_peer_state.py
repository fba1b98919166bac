"""How a controller shows the nodes another controller follows (controller/peerlinks.py): the
owner's report while its stream works, and not current, saying why, as soon as it does not;
never old state as fresh."""

from __future__ import annotations

import asyncio
import time

import grpc

from fleetvisor.controller.livestate import NodeLinks
from fleetvisor.controller.peerlinks import PeerFeed, Peers
from fleetvisor.controller.peerservice import PeerServicer
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


def event(sequence: int, **kind: object) -> apb.AgentEvent:
    return apb.AgentEvent(sequence=sequence, agent_run_id="run-a", **kind)  # type: ignore[arg-type]


def proc(name: str, group: str, pid: int) -> apb.ProcessInfo:
    return apb.ProcessInfo(name=name, group=group, namespec=f"{group}:{name}", state=apb.RUNNING,
                           statename="RUNNING", pid=pid)


def test_a_node_sent_again_carries_only_its_changed_processes_unless_some_went() -> None:
    """PeerService over a real channel: a snapshot of whole nodes, then partial ones that the
    follower merges into what it holds; a removal sends the node whole again; a follower that
    does not ask for partial nodes (an older controller) gets whole ones."""
    async def run() -> None:
        owned = NodeLinks(None, lambda: None)
        owned.sync({"web-1": "127.0.0.1:1"}, None, "ctl-2")
        link = owned.get("web-1")
        assert link is not None and link.following and link._task is not None
        link._task.cancel()  # still following; its events are fed by hand below
        link._apply(event(1, snapshot=apb.Snapshot(info=apb.AgentInfo(node="web-1"), processes=[
            proc("a", "app", 10), proc("b", "app", 11), proc("w", "worker", 12)])))
        server = grpc.aio.server()
        ppb_grpc.add_PeerServiceServicer_to_server(PeerServicer(owned, "ctl-2"), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            stub = ppb_grpc.PeerServiceStub(channel)
            partial, whole = stub.FollowLive(ppb.FollowLiveRequest(partial=True)), stub.FollowLive(ppb.FollowLiveRequest())
            feed = PeerFeed(ControllerRecord("ctl-2", "unused"), None, lambda *_: None, grace=60, on_gone=lambda: None)

            async def next_node(call: grpc.aio.UnaryStreamCall) -> ppb.LiveNode:
                message = await asyncio.wait_for(call.read(), 10)
                assert len(message.nodes) == 1, message
                if call is partial:
                    feed._apply(message)
                return message.nodes[0]

            first = await next_node(partial)
            assert not first.partial and len(first.processes) == 3
            assert len((await next_node(whole)).processes) == 3

            link._apply(event(2, process_state=apb.ProcessStateEvent(process=proc("b", "app", 21))))
            changed = await next_node(partial)
            assert changed.partial and [p.namespec for p in changed.processes] == ["app:b"]
            assert {s: p.pid for s, p in feed.states["web-1"].processes.items()} == {
                "app:a": 10, "app:b": 21, "worker:w": 12}, "the others stay as sent before"
            assert len((await next_node(whole)).processes) == 3

            link._apply(event(3, group=apb.GroupEvent(group="worker", added=False)))
            removed = await next_node(partial)
            assert not removed.partial and sorted(p.pid for p in removed.processes) == [10, 21]
            assert sorted(feed.states["web-1"].processes) == ["app:a", "app:b"]
        finally:
            await channel.close()
            await server.stop(None)
            await owned.close()
    asyncio.run(run())
