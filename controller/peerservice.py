"""PeerService: this controller's share of the agents' live state, streamed to the other
controllers (peer.proto). The guard admits controller certificates of the cluster only.

A stream starts with a snapshot of every node this controller follows, then sends each node
again whenever its state changed, in messages of at most SNAPSHOT_BATCH nodes: changes are
coalesced for COALESCE seconds, so a flapping process costs one message per period, and a
state change reaches another controller's status well within a second. A node sent again
carries only the processes that changed since this stream sent it (`partial`), unless some
were replaced or removed: at thousands of nodes, whole nodes per change were most of the
controllers' work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc

from fleetvisor.v1 import peer_pb2 as ppb
from fleetvisor.v1 import peer_pb2_grpc as ppb_grpc

from .livestate import NodeLink, NodeLinks

COALESCE = 0.05  # seconds changes are gathered before they are sent
SNAPSHOT_BATCH = 200  # nodes per message at most (about 0.8 MB with 20 processes each)


def live_node(link: NodeLink, since: int | None = None) -> ppb.LiveNode:
    """What this controller knows of a node it follows; RUNNING uptimes brought up to now. With
    `since` (the link's serial when this node was sent before), only what changed after it."""
    only = None if since is None else link.changed_since(since)
    node = ppb.LiveNode(name=link.name, reachable=link.reachable, error=link.error,
                        state_as_of=time.time() if link.reachable else link.state_as_of,
                        processes=link.snapshot(only), run_id=link.run_id, sessions=link.sessions,
                        partial=only is not None)
    if link.info is not None:
        node.info.CopyFrom(link.info)
    return node


class PeerServicer(ppb_grpc.PeerServiceServicer):
    def __init__(self, links: NodeLinks, controller_id: str) -> None:
        self.links = links
        self.controller_id = controller_id

    async def FollowLive(self, request: ppb.FollowLiveRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[ppb.LiveStates]:
        dirty: set[str] = set()
        wake = asyncio.Event()

        def changed(name: str) -> None:
            dirty.add(name)
            wake.set()

        self.links.watchers.append(changed)
        try:
            followed = self.links.followed()
            sent = {link.name: link.serial for link in followed}  # node -> its serial when sent
            for i in range(0, max(1, len(followed)), SNAPSHOT_BATCH):
                yield ppb.LiveStates(controller_id=self.controller_id, resync=i == 0,
                                     nodes=[live_node(link) for link in followed[i:i + SNAPSHOT_BATCH]])
            while True:
                await wake.wait()
                await asyncio.sleep(COALESCE)
                wake.clear()
                names = sorted(dirty)
                dirty.clear()
                for i in range(0, len(names), SNAPSHOT_BATCH):  # a take-over changes hundreds at once
                    message = ppb.LiveStates(controller_id=self.controller_id)
                    for name in names[i:i + SNAPSHOT_BATCH]:
                        link = self.links.get(name)
                        if link is not None and link.following:
                            message.nodes.append(live_node(link, sent.get(name) if request.partial else None))
                            sent[name] = link.serial
                        elif name in sent:
                            message.dropped.append(name)
                            del sent[name]
                    if message.nodes or message.dropped:
                        yield message
        finally:
            self.links.watchers.remove(changed)
