"""The one authorization point of a gRPC server: an interceptor that, before any handler runs,
works out who is calling (from the verified certificate, or the plaintext mode the server was
started in), refuses revoked, role-less or foreign-cluster certificates with UNAUTHENTICATED,
and refuses with PERMISSION_DENIED a method that has no rule or whose verb no grant of the
caller has anywhere. Handlers read the caller from `current()` for their scope checks.

A request that does not decode (invalid UTF-8 in a string field, a truncated message) is
refused here too, once the caller is admitted: INVALID_ARGUMENT with one line, where grpc's
own answer would be an INTERNAL "Exception deserializing request!" and a traceback in the
server's log. Every refusal goes to the gate's refusal hook (the controller's audit).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from .identity import LOCAL, ROLES, Identity, IdentityError, from_pem, insecure
from .policy import Authorizer, denial
from .rules import verb_for

_CURRENT: ContextVar[Identity] = ContextVar("fleetvisor_caller")
_CACHE_MAX = 1024
NODE_KEY = "fleetvisor-node"  # metadata: the node a controller means a call for
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class Mode(enum.Enum):
    TLS = "mutual TLS"
    LOCAL = "plaintext on loopback"
    INSECURE = "plaintext, insecure"


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class InsecureListen(ValueError):
    """Plaintext requested off loopback without the explicit insecure switch."""


def mode_for(host: str, tls: bool, insecure: bool) -> Mode:
    """How a server on `host` authenticates. Raises InsecureListen for plaintext off loopback
    unless `insecure` was given."""
    if tls:
        return Mode.TLS
    if host in LOOPBACK:
        return Mode.LOCAL
    if insecure:
        return Mode.INSECURE
    raise InsecureListen(f"refusing to serve plaintext on {host or '0.0.0.0'}, off loopback")


AGENT_SERVES = frozenset({"controller", "operator", "viewer"})       # never another agent
CONTROLLER_SERVES = frozenset({"agent", "operator", "viewer"})     # controllers do not call each other ...
PEER_SERVES = frozenset({"controller"})  # ... but for PeerService (controller/peerservice.py), which serves only them


def current() -> Identity:
    """The caller of the RPC being served. Outside one, nobody: a LookupError, never a default."""
    return _CURRENT.get()


def serve_as(identity: Identity) -> None:
    """Make `identity` the caller for the rest of this task: a face other than gRPC (the
    dashboard) that calls the servicer runs each request in a task of its own, as gRPC does."""
    _CURRENT.set(identity)


RefusalHook = Callable[[Identity | None, str, str], Awaitable[None]]


@dataclass
class Gate:
    """What the guard knows: its mode, its cluster (a certificate for another is refused), the
    current policies and revoked serials. The owner replaces `authorizer` and `revoked` as
    they change; both are read per call."""
    mode: Mode
    cluster: str = ""
    node: str = ""  # an agent's own name: a call a controller meant for another node is refused
    roles: frozenset[str] = frozenset(ROLES)  # the certificate roles this server serves at all
    # a service served to other roles than `roles` ("fleetvisor.v1.PeerService" -> controllers only)
    service_roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    authorizer: Authorizer = field(default_factory=Authorizer)
    revoked: Mapping[str, str] = field(default_factory=dict)
    on_refusal: RefusalHook | None = None
    on_unauthenticated: Callable[[str], None] | None = None  # insecure mode: a new peer
    _identities: dict[bytes, Identity | IdentityError] = field(default_factory=dict)
    _peers: set[str] = field(default_factory=set)
    _streams: dict[str, set[asyncio.Task[Any]]] = field(default_factory=dict)  # serial -> open streams

    def revoke(self, revoked: Mapping[str, str]) -> None:
        """Replace the revoked serials; a stream open under one that is newly revoked is cut."""
        self.revoked = revoked
        for serial in self._streams.keys() & revoked.keys():
            for task in self._streams[serial]:
                task.cancel()

    def follow(self, identity: Identity, task: asyncio.Task[Any] | None) -> Callable[[], None]:
        """Note an open stream of `identity`; returns what forgets it."""
        if not identity.serial or task is None:
            return lambda: None
        open_ = self._streams.setdefault(identity.serial, set())
        open_.add(task)

        def forget() -> None:
            open_.discard(task)
            if not open_:
                self._streams.pop(identity.serial, None)
        return forget

    def identify(self, context: grpc.aio.ServicerContext) -> Identity:
        """Raises Refused."""
        if self.mode is Mode.LOCAL:
            return LOCAL
        if self.mode is Mode.INSECURE:
            peer = context.peer() or ""
            if self.on_unauthenticated is not None and peer not in self._peers:
                if len(self._peers) >= _CACHE_MAX:
                    self._peers.clear()
                self._peers.add(peer)
                self.on_unauthenticated(peer)
            return insecure(peer)
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, "a client certificate signed by the fleet's CA is required")
        return self.vet(self._parse(pems[0]))

    def identify_pem(self, pem: bytes) -> Identity:
        """The identity of a peer certificate TLS verified outside gRPC (the dashboard's). Raises Refused."""
        return self.vet(self._parse(pem))

    def vet(self, identity: Identity) -> Identity:
        """`identity` unless it is another cluster's or its certificate is revoked (also for an
        identity carried by a dashboard token: its certificate's revocation ends it). Raises Refused."""
        if self.cluster and identity.cluster != self.cluster:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED,
                          f"{identity} holds a certificate for cluster {identity.cluster!r}; this is {self.cluster!r}")
        if identity.serial in self.revoked:
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, _revoked(identity))
        return identity

    def _parse(self, pem: bytes) -> Identity:
        found = self._identities.get(pem)
        if found is None:
            try:
                found = from_pem(pem)
            except IdentityError as exc:
                found = exc
            if len(self._identities) >= _CACHE_MAX:
                self._identities.clear()
            self._identities[pem] = found
        if isinstance(found, IdentityError):
            raise Refused(grpc.StatusCode.UNAUTHENTICATED, str(found))
        return found

    def admit(self, context: grpc.aio.ServicerContext, method: str) -> Identity:
        """Who is calling `method`, if they may call it at all. Raises Refused."""
        identity = self.identify(context)
        self._check_role(identity, method)
        if self.node:
            self._check_node(identity, context)
        self._check_verb(identity, method)
        return identity

    def permit(self, identity: Identity, method: str) -> None:
        """The guard's checks of a call of `method` by an identity found otherwise (the
        dashboard's): the same rule table, the same policies. Raises Refused."""
        self._check_role(identity, method)
        self._check_verb(identity, method)

    def _check_role(self, identity: Identity, method: str) -> None:
        service = method.lstrip("/").rpartition("/")[0]
        roles = self.service_roles.get(service, self.roles)
        if identity.verified and identity.role not in roles:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"{identity} may not call {method}: "
                          f"{service or 'this server'} serves {', '.join(sorted(roles))} certificates only")

    def _check_verb(self, identity: Identity, method: str) -> None:
        verb = verb_for(method)
        if verb is None:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, f"{identity} may not call {method}: it has no rule")
        if not self.authorizer.may(identity, verb):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED, denial(identity, verb, f"(calling {method})"))


    def _check_node(self, identity: Identity, context: grpc.aio.ServicerContext) -> None:
        """A controller names the node it dialled; a reused address must not get another
        node's commands. People dialling a node directly need not name it."""
        meant = next((v for k, v in context.invocation_metadata() or () if k == NODE_KEY), "")
        if isinstance(meant, bytes):
            meant = meant.decode(errors="replace")
        if meant and meant != self.node:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"this is node {self.node!r}; the call was meant for node {meant[:80]!r}")
        if not meant and identity.role == "controller":
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"a controller must name the node it calls ({NODE_KEY} metadata); this is {self.node!r}")


def _revoked(identity: Identity) -> str:
    return f"{identity}: certificate serial {identity.serial} is revoked"


@dataclass(frozen=True)
class Undecodable:
    """What the guard's deserializer gives for a request that does not decode."""

    reason: str

    def refusal(self, method: str) -> Refused:
        return Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{method.rpartition('/')[2]}: the request does not "
                                                         f"decode (is every string field valid UTF-8?): {self.reason}")


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize` with its failure as a value, for the handler to refuse."""
    if deserialize is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            return Undecodable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return decode


class Guard(grpc.aio.ServerInterceptor):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        gate = self.gate

        async def refuse(context: grpc.aio.ServicerContext, exc: Refused) -> NoReturn:
            if gate.on_refusal is not None:
                identity = None
                try:
                    identity = gate.identify(context)
                except Refused:
                    pass
                await gate.on_refusal(identity, method, str(exc))
            await context.abort(exc.code, str(exc))
            raise AssertionError("abort raises")

        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    _CURRENT.set(gate.admit(context, method))  # each RPC runs in a task of its own
                    if isinstance(request, Undecodable):
                        raise request.refusal(method)
                except Refused as exc:
                    await refuse(context, exc)
                return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, _tolerant(handler.request_deserializer),
                                                       handler.response_serializer)
        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Identity:
            """The caller of a stream, followed so that a revocation ends it."""
            try:
                identity = gate.admit(context, method)
                if isinstance(request, Undecodable):
                    raise request.refusal(method)
            except Refused as exc:
                await refuse(context, exc)
            _CURRENT.set(identity)
            return identity

        @contextlib.asynccontextmanager
        async def followed(identity: Identity, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            forget = gate.follow(identity, asyncio.current_task())
            try:
                yield
            except asyncio.CancelledError:
                if identity.serial not in gate.revoked:
                    raise
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, _revoked(identity))
            finally:
                forget()

        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream
            if not inspect.isasyncgenfunction(inner_stream):  # it writes with context.write (gRPC health's Watch)
                async def writing(request: Any, context: grpc.aio.ServicerContext) -> None:
                    async with followed(await admitted(request, context), context):
                        await inner_stream(request, context)
                return grpc.unary_stream_rpc_method_handler(writing, _tolerant(handler.request_deserializer),
                                                            handler.response_serializer)

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with followed(await admitted(request, context), context):
                    async for item in inner_stream(request, context):
                        yield item

            return grpc.unary_stream_rpc_method_handler(stream, _tolerant(handler.request_deserializer),
                                                        handler.response_serializer)
        if handler.stream_stream is not None:  # server reflection
            inner_both = handler.stream_stream

            async def both(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async def decoded() -> AsyncIterator[Any]:
                    async for request in requests:
                        if isinstance(request, Undecodable):
                            await refuse(context, request.refusal(method))
                        yield request
                async with followed(await admitted(None, context), context):
                    async for item in inner_both(decoded(), context):
                        yield item

            return grpc.stream_stream_rpc_method_handler(both, _tolerant(handler.request_deserializer),
                                                         handler.response_serializer)

        async def unsupported(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await refuse(context, Refused(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not served"))

        return grpc.unary_unary_rpc_method_handler(unsupported)
