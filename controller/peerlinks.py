"""The other controllers' shares of the agents' live state: one FollowLive stream (peer.proto)
from each live controller, put into this controller's node links for the nodes it follows.

A node's state is taken only from the controller the assignment gives it to. While that one
cannot be reached, has not reported the node yet, or is not known here, the node is shown
not current (reachable false, the reason in its error, `state_as_of` when it was last known):
old state is never shown as fresh. A controller that died is taken out of the assignment when
its lease expires (roster.py), and this controller's own followers take over its nodes.

Sooner, where this controller can tell: a peer whose port refuses connections runs no
controller (it crashed, or it is restarting), and one whose stream stayed down for the
controller TTL is as good as gone from here. Such a peer is `gone`: this controller leaves it
out of its own assignment and follows its nodes itself until its stream works again. Two
controllers that cannot reach each other then both follow each other's nodes: more streams,
never a node without current state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import grpc

from fleetvisor.agent.limits import MAX_STATUS_MESSAGE_BYTES
from fleetvisor.agent.security.tlsfiles import TlsMaterial
from fleetvisor.v1 import peer_pb2 as ppb
from fleetvisor.v1 import peer_pb2_grpc as ppb_grpc

from .backoff import Backoff
from .livestate import CHANNEL_OPTIONS, LiveState, NodeLinks, rpc_reason
from .records import ControllerRecord

log = logging.getLogger("fleetvisor.controller")

# As the agents' links, with a quicker keepalive (a hung peer's nodes are shown stale within 3 s;
# the controllers' servers accept a ping a second), and room for a big snapshot.
PEER_CHANNEL_OPTIONS = [*CHANNEL_OPTIONS, ("grpc.keepalive_time_ms", 1000), ("grpc.keepalive_timeout_ms", 2000),
                        ("grpc.max_receive_message_length", MAX_STATUS_MESSAGE_BYTES)]


def live_state(node: ppb.LiveNode, owner: str, before: LiveState | None) -> LiveState:
    """The state `node` reports; a partial one names only the processes that changed since
    `before`, the state the same stream reported last."""
    processes, received = ({}, {}) if before is None or not node.partial else \
        (dict(before.processes), dict(before.received))
    now = time.monotonic()
    for proc in node.processes:
        processes[proc.namespec] = proc
        received[proc.namespec] = now
    return LiveState(reachable=node.reachable, error=node.error, state_as_of=node.state_as_of,
                     info=node.info if node.HasField("info") else None, processes=processes,
                     received=received, owner=owner, run_id=node.run_id, sessions=node.sessions)


class PeerFeed:
    """The stream from one other controller: the states of the nodes it follows."""

    def __init__(self, record: ControllerRecord, tls: TlsMaterial | None,
                 on_update: Callable[[PeerFeed, Iterable[str]], None], *, grace: float,
                 on_gone: Callable[[], None]) -> None:
        self.id = record.id
        self.address = record.address
        self.tls = tls
        self.on_update = on_update
        self.grace = grace
        self.on_gone = on_gone
        self.states: dict[str, LiveState] = {}
        self.connected = False
        self.gone = False  # see the module's docstring
        self.error = "not connected yet"
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow(), name=f"peer {self.id}")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _set_gone(self, gone: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if gone != self.gone:
            self.gone = gone
            if gone:
                log.warning("controller %s at %s is gone from here (%s): following its nodes until it is back",
                            self.id, self.address, self.error)
            self.on_gone()

    def _dial(self) -> grpc.aio.Channel:
        """With this controller's certificate, which the peer's guard checks; the peer's own is
        checked against its advertised address, as fleetctl checks it."""
        if self.tls is None:
            return grpc.aio.insecure_channel(self.address, options=PEER_CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(self.address, self.tls.channel_credentials(), options=PEER_CHANNEL_OPTIONS)

    async def _follow(self) -> None:
        backoff = Backoff(initial=0.2, cap=5.0, jitter=0.2)
        while True:
            channel = self._dial()  # again after each failure: it takes a rotated certificate
            try:
                async for message in ppb_grpc.PeerServiceStub(channel).FollowLive(ppb.FollowLiveRequest(partial=True)):
                    self._apply(message)
                    backoff.reset()
                reason = "it ended the stream"
            except grpc.aio.AioRpcError as exc:
                reason = rpc_reason(exc)
                refused = exc.code() == grpc.StatusCode.UNAVAILABLE and "refused" in (exc.details() or "").lower()
            finally:
                await channel.close(grace=None)
            was_connected = self.connected
            if self.connected or self.error != reason:
                if self.connected:
                    log.warning("lost the live state stream from controller %s at %s: %s", self.id, self.address,
                                reason)
                self.connected, self.error = False, reason
                self.on_update(self, list(self.states))
            if refused:
                self._set_gone(True)
            elif was_connected or (not self.gone and self._timer is None):
                self._timer = asyncio.get_running_loop().call_later(self.grace, self._set_gone, True)
            await asyncio.sleep(backoff.next())

    def _apply(self, message: ppb.LiveStates) -> None:
        touched: set[str] = set()
        if message.resync:
            touched.update(self.states)
            self.states = {}
            if not self.connected:
                log.info("following the live state of controller %s at %s", self.id, self.address)
            self.connected, self.error = True, ""
            self._set_gone(False)
        for node in message.nodes:
            self.states[node.name] = live_state(node, self.id, self.states.get(node.name))
            touched.add(node.name)
        for name in message.dropped:
            self.states.pop(name, None)
            touched.add(name)
        self.on_update(self, touched)


class Peers:
    """A feed from every other live controller; the states of the nodes they own go into the links."""

    def __init__(self, me: str, links: NodeLinks, tls: TlsMaterial | None, *, grace: float,
                 on_gone: Callable[[], None]) -> None:
        """`grace`: how long a peer's stream may stay down before it counts as gone; `on_gone`:
        called when a peer becomes gone or comes back (the assignment changes)."""
        self.me = me
        self.links = links
        self.tls = tls
        self.grace = grace
        self.on_gone = on_gone
        self.feeds: dict[str, PeerFeed] = {}
        self.owners: dict[str, str] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._closing.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._closing.discard)

    def sync(self, controllers: dict[str, ControllerRecord], owners: dict[str, str]) -> None:
        """Follow the other live controllers; take each node not owned here from its owner."""
        for cid in list(self.feeds):
            record = controllers.get(cid)
            if record is None or record.address != self.feeds[cid].address:
                self._background(self.feeds.pop(cid).close())
        for cid, record in controllers.items():
            if cid != self.me and cid not in self.feeds and record.address:
                feed = self.feeds[cid] = PeerFeed(record, self.tls, self._updated, grace=self.grace,
                                                  on_gone=self.on_gone)
                feed.start()
        self.owners = owners
        for name, owner in owners.items():
            if owner != self.me:
                self._resolve(name)  # cheap when nothing changed: `take` shows a state once

    def gone(self) -> set[str]:
        return {cid for cid, feed in self.feeds.items() if feed.gone}

    def _updated(self, feed: PeerFeed, names: Iterable[str]) -> None:
        if self.feeds.get(feed.id) is not feed:
            return  # a feed being closed
        for name in names:
            if self.owners.get(name) == feed.id:
                self._resolve(name)

    def _resolve(self, name: str) -> None:
        link = self.links.get(name)
        if link is None or link.following:
            return
        owner = self.owners.get(name, "")
        feed = self.feeds.get(owner)
        if feed is None:
            link.take(None, f"followed by controller {owner or 'none'}, which is not known here")
        elif not feed.connected:
            link.take(None, f"followed by controller {owner}, which this controller cannot reach: {feed.error}")
        elif (state := feed.states.get(name)) is None:
            link.take(None, f"followed by controller {owner}, which has not reported it yet")
        else:
            link.take(state)

    async def close(self) -> None:
        feeds, self.feeds = self.feeds, {}
        await asyncio.gather(*(feed.close() for feed in feeds.values()))
        await asyncio.gather(*self._closing, return_exceptions=True)
