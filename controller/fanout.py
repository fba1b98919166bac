"""Fleet-wide start/stop/restart/signal: every matching node in parallel, each with a deadline.

Which processes a node gets is decided from the controller's live cache, so a glob over nodes
(`*:worker`) skips nodes without a `worker`. A node the controller cannot reach, or that does
not answer in time, is reported in its own result while the others proceed.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb

from .fleet import Fleet, NotFound
from .livestate import rpc_reason

_METHOD = {pb.START: "Start", pb.STOP: "Stop", pb.RESTART: "Restart", pb.SIGNAL: "Signal"}


async def control(fleet: Fleet, request: pb.ControlRequest, *, default_timeout: float,
                  concurrency: int = 64) -> pb.ControlResponse:
    method = _METHOD.get(request.action)
    if method is None:
        raise NotFound("no action given (start, stop, restart or signal)")
    if request.action == pb.SIGNAL and not request.signal:
        raise NotFound("no signal given")
    if not request.patterns:
        raise NotFound("no process names given (use 'all' for every process)")
    picked = fleet.pick(list(request.patterns), dict(request.labels))
    timeout = request.node_timeout_seconds or default_timeout
    slots = asyncio.Semaphore(concurrency)

    async def one(name: str, names: list[str]) -> pb.NodeResult:
        began = time.monotonic()
        link = fleet.links.get(name)
        if link is None or not link.reachable:
            return pb.NodeResult(node=name, ok=False, error=link.error if link else "unreachable (no address known)")
        if method == "Signal":
            call = apb.SignalCommand(names=names, signal=request.signal)
        else:
            call = apb.ProcessCommand(names=names, wait=request.wait)
        try:
            async with slots:
                answer = await getattr(link.stub, method)(call, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return pb.NodeResult(node=name, ok=False, error=rpc_reason(exc), seconds=time.monotonic() - began)
        return pb.NodeResult(node=name, ok=all(r.ok for r in answer.results), results=answer.results,
                             seconds=time.monotonic() - began)

    jobs = []
    for member, procs in picked:
        link = fleet.links.get(member.name)
        if link is not None and link.reachable and not procs:
            continue  # the node is live and nothing of it matches
        jobs.append(one(member.name, [p.namespec for p in procs]))
    if not jobs:
        raise NotFound("nothing matches: " + " ".join(request.patterns))
    return pb.ControlResponse(nodes=await asyncio.gather(*jobs))
