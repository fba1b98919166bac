"""A process's log through the controller: checked here, read from its agent's TailLog.

One path for every face (gRPC's TailLog, XML-RPC's read/tail methods and /logtail streams):
the node must be a member with a link, the tail length within the agent's limit, and the
caller allowed to read the process, all before the agent is asked. The agent's refusals come
back as the core's errors, one line each, naming the node.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc

from fleetvisor.agent.logfiles import tail_bytes_refusal
from fleetvisor.agent.security.identity import Identity
from fleetvisor.v1 import agent_pb2 as apb

from .authorize import Checks
from .errors import ControllerError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from .fleet import Fleet
from .livestate import rpc_reason

_AGENT_ERRORS: dict[grpc.StatusCode, type[ControllerError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound, grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument}


async def tail(fleet: Fleet, checks: Checks, who: Identity, node: str, request: apb.TailLogRequest, *,
               timeout: float) -> AsyncGenerator[apb.LogChunk, None]:
    """The agent's chunks; `timeout` bounds a read that does not follow. Raises NotFound,
    InvalidArgument, PermissionDenied (before the agent is asked), or the agent's refusal."""
    link = fleet.links.get(node)
    member = fleet.membership.member(node)
    if member is None or link is None:
        raise NotFound(f"no such node: {node}")
    if refusal := tail_bytes_refusal(request.last_bytes):
        raise InvalidArgument(refusal)
    checks.read_process(who, member, request.name)
    try:
        async for chunk in link.stub.TailLog(request, timeout=None if request.follow else timeout):
            yield chunk
    except grpc.aio.AioRpcError as exc:
        raise _AGENT_ERRORS.get(exc.code(), Unavailable)(f"{node}: {rpc_reason(exc)}") from None
