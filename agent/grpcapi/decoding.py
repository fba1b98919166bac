"""A request that does not decode (invalid UTF-8 in a string field, a truncated message) is
INVALID_ARGUMENT with one line, on the agent and the controller alike.

grpc's own answer is an INTERNAL "Exception deserializing request!" and a traceback in the
server's log. This interceptor (placed after the security guard, so the caller is admitted
first) swaps in a deserializer that turns the failure into a value, and answers that value
with INVALID_ARGUMENT before the servicer would see it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from ..security import guard
from ..security.guard import Gate


@dataclass(frozen=True)
class Undecodable:
    reason: str


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Undecodable(first)
    return decode


async def _refuse(context: grpc.aio.ServicerContext, method: str, bad: Undecodable, gate: Gate | None) -> NoReturn:
    reason = (f"{method.rpartition('/')[2]}: the request does not decode "
              f"(is every string field valid UTF-8?): {bad.reason}")
    if gate is not None and gate.on_refusal is not None:  # audited like the guard's refusals
        try:
            identity = guard.current()
        except LookupError:
            identity = None
        await gate.on_refusal(identity, method, reason)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason)
    raise AssertionError("abort raises")


class DecodeGuard(grpc.aio.ServerInterceptor):
    """`gate`: the security guard's, whose refusal hook (the controller's audit) hears of
    every request refused here."""

    def __init__(self, gate: Gate | None = None) -> None:
        self.gate = gate

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method if isinstance(details.method, str) else details.method.decode()
        deserialize = _safe(handler.request_deserializer)
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if isinstance(request, Undecodable):
                    await _refuse(context, method, request, self.gate)
                return await inner_unary(request, context)
            return grpc.unary_unary_rpc_method_handler(unary, deserialize, handler.response_serializer)
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if isinstance(request, Undecodable):
                    await _refuse(context, method, request, self.gate)
                async for item in inner_stream(request, context):
                    yield item
            return grpc.unary_stream_rpc_method_handler(stream, deserialize, handler.response_serializer)
        return handler  # no client-streaming methods are served
