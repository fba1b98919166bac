"""Connecting to etcd: settings, a TLS- and token-aware aetcd client, and a raw watch stream.

aetcd's own `Client.connect()` only makes an insecure channel, authenticates once (a token
that etcd forgets when it restarts) and its watcher neither reconnects nor reports watch
progress. The controller needs all three, so this module owns the channel: TLS credentials,
a token that is renewed when etcd says it is stale, gRPC reconnect and keepalive settings
suited to a long-lived controller, and `WatchStream`, one plain etcd watch per stream that
callers re-open from the revision they last saw.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aetcd
import aetcd.watcher
import grpc
from aetcd import rpc
from aetcd.utils import prefix_range_end

log = logging.getLogger("fleetvisor.controller")

__all__ = ["CallCutOff", "Client", "EtcdError", "EtcdSettings", "WatchCanceled", "WatchCompacted",
           "WatchStream", "being_cancelled", "connect", "describe", "event_revision", "prefix_range_end",
           "recover"]


class EtcdError(Exception):
    """etcd could not be reached or refused us; the message is one line fit for a user."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable  # no member answered at all (not a refusal or a bad setting)


class CallCutOff(Exception):
    """A call or stream on the channel of a member that was left for another (fail_over())
    ended when that channel was closed; retry on the current one."""

    def __init__(self) -> None:
        super().__init__("cut off when the client moved to another etcd member")


def being_cancelled() -> bool:
    """Whether the running task was asked to stop.

    grpc.aio reports a call that its channel cancelled (closing the channel of a member that
    was left behind) to whoever awaits it as asyncio.CancelledError, which looks exactly like a
    request to stop. A retry loop that catches CancelledError asks this: if its task is not
    being cancelled, the call was cut off (CallCutOff) and the loop carries on.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


class WatchCompacted(Exception):
    """The revision a watch asked for was compacted away; the watcher must reload."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"etcd compacted history up to revision {compact_revision}")
        self.compact_revision = compact_revision


class WatchCanceled(Exception):
    """etcd ended a watch for a reason other than compaction (e.g. permission denied)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason or "watch canceled by etcd")
        self.reason = reason


@dataclass
class EtcdSettings:
    """How to reach etcd. `ca` switches TLS on; `cert`/`key` add a client certificate."""

    endpoints: list[str] = field(default_factory=lambda: ["127.0.0.1:2379"])
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs
    timeout: float = 5.0
    # told (kind, seconds) after each unary request, e.g. ("Range", 0.002): the metrics' histogram
    observe: Callable[[str, float], None] | None = field(default=None, repr=False, compare=False)


# Reconnect fast after an etcd restart (gRPC's default backoff grows to two minutes), notice a
# dead peer within seconds, and accept large range reads (gRPC's default cap is 4 MiB).
# etcd refuses client pings more often than every 5 s, so keepalive stays at 10 s.
CHANNEL_OPTIONS: dict[str, int] = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 2000,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,
    "grpc.max_receive_message_length": 256 * 1024 * 1024,
}

# Tell etcd to fail a watch when its member has lost the raft leader, instead of leaving us
# on a silent stream from a partitioned member (what etcd's own Go client does).
REQUIRE_LEADER = (("hasleader", "true"),)

_AUTH_METHOD = "/etcdserverpb.Auth/Authenticate"


def _is_authenticate(details: grpc.aio.ClientCallDetails) -> bool:
    method = details.method  # bytes inside grpc.aio interceptors
    return (method.decode() if isinstance(method, bytes) else method) == _AUTH_METHOD
_STALE_TOKEN_HINTS = ("invalid auth token", "auth store is old")


def describe(exc: BaseException) -> str:
    """One line about a failure: gRPC's details without the debug blob, never a traceback."""
    if isinstance(exc, grpc.aio.AioRpcError):
        text = exc.details() or exc.code().name
    elif isinstance(exc, (asyncio.TimeoutError, aetcd.exceptions.ConnectionTimeoutError)):
        text = "timed out"
    else:
        text = str(exc) or type(exc).__name__
    # "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:2379: <the reason>"
    text = text.split("last error: ", 1)[-1]
    text = re.sub(r"^[A-Z_]+: (ipv4|ipv6|unix|dns):\S+: ", "", text)
    return " ".join(text.split())


# What a failed TLS setup looks like from here, and what to check.
_TLS_HINTS = (
    ("Socket closed", "plaintext refused: does etcd need TLS (set its CA)?"),
    ("TSI_DATA_CORRUPTED", "etcd refused our TLS client certificate (missing or from another CA?)"),
    ("BAD_SIGNATURE", "etcd's certificate is not signed by the given CA"),
    ("CERTIFICATE_VERIFY_FAILED", "etcd's certificate does not match the given CA or host name"),
)


def _with_hint(reason: str, tls: bool) -> str:
    for needle, hint in _TLS_HINTS:
        if needle in reason and (tls or needle == "Socket closed"):
            return f"{reason}; {hint}"
    return reason


def is_stale_token(exc: BaseException) -> bool:
    """True when etcd rejected our auth token (it forgets simple tokens on restart)."""
    cause = exc.__cause__ if isinstance(exc, aetcd.exceptions.ClientError) and exc.__cause__ else exc
    return isinstance(cause, grpc.aio.AioRpcError) and any(h in (cause.details() or "")
                                                           for h in _STALE_TOKEN_HINTS)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """'host:port', '[v6]:port' or an http(s):// URL -> (host, port)."""
    rest = endpoint.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise EtcdError(f"bad etcd endpoint {endpoint!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


class _Token:
    """The current auth token; renewed once when several calls find it stale together."""

    def __init__(self, user: str, password: str, timeout: float) -> None:
        self.user = user
        self._password = password
        self._timeout = timeout
        self.value: str | None = None
        self._lock = asyncio.Lock()
        self.stub: rpc.AuthStub | None = None

    async def renew(self, stale: str | None) -> None:
        async with self._lock:
            if self.value != stale:
                return  # another call renewed it while we waited
            request = rpc.AuthenticateRequest(name=self.user, password=self._password)
            assert self.stub is not None, "set by Client.connect() before any call"
            response = await self.stub.Authenticate(request, timeout=self._timeout)
            self.value = response.token

    def details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        if self.value is None or _is_authenticate(details):
            return details
        metadata = grpc.aio.Metadata(*[(k, v) for k, v in (details.metadata or ()) if k != "token"])
        metadata.add("token", self.value)
        return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata,
                                          details.credentials, details.wait_for_ready)


class _UnaryAuth(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the token to unary calls and retries once with a new token when etcd forgot it."""

    def __init__(self, token: _Token) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails,
                                    request: object) -> Any:
        stale = self._token.value
        call = await continuation(self._token.details(details), request)
        if _is_authenticate(details):
            return call
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            if not is_stale_token(exc):
                raise
        await self._token.renew(stale)
        return await continuation(self._token.details(details), request)


class _StreamAuth(grpc.aio.StreamStreamClientInterceptor):
    """Adds the token to watch and keepalive streams; their owners renew it on failure."""

    def __init__(self, token: _Token) -> None:
        self._token = token

    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails,
                                      request_iterator: object) -> Any:
        return await continuation(self._token.details(details), request_iterator)


class _UnaryTiming(grpc.aio.UnaryUnaryClientInterceptor):
    """Times every unary etcd request by its method name (etcd's own, so a bounded set)."""

    def __init__(self, observe: Callable[[str, float], None]) -> None:
        self._observe = observe

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails,
                                    request: object) -> Any:
        start = time.monotonic()
        try:
            call = await continuation(details, request)
            return await call
        finally:
            method = details.method.decode() if isinstance(details.method, bytes) else details.method
            self._observe(method.rpartition("/")[2], time.monotonic() - start)


class Client(aetcd.Client):
    """aetcd's client on a channel we build: TLS when `credentials` is given, renewable auth."""

    _host: str  # aetcd's, set again by fail_over()
    _port: int

    def __init__(self, endpoint: str, *, credentials: grpc.ChannelCredentials | None = None,
                 user: str | None = None, password: str | None = None, timeout: float = 5.0,
                 others: Sequence[str] = (), observe: Callable[[str, float], None] | None = None) -> None:
        host, port = split_endpoint(endpoint)
        super().__init__(host=host, port=port, timeout=timeout, options=dict(CHANNEL_OPTIONS))
        self.endpoint = endpoint
        # the cluster's other members, in order: where fail_over() goes next
        self.endpoints = [endpoint, *(e for e in others if e != endpoint)]
        self._credentials = credentials
        self._token = _Token(user, password or "", timeout) if user else None
        self._observe = observe
        self._connect_lock = asyncio.Lock()
        self._failed_over_at = 0.0
        # channels of members left behind, closed once the calls still on them had their time
        self._retired: set[grpc.aio.Channel] = set()
        self._retiring: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        """Open the channel and, with credentials, get a token. Safe to call repeatedly."""
        if self._connected.is_set():
            return
        async with self._connect_lock:
            if self._connected.is_set():
                return
            target = f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"
            interceptors: list[Any] = [_UnaryTiming(self._observe)] if self._observe else []
            if self._token:  # inside the timing: a retry with a renewed token is one request
                interceptors += [_UnaryAuth(self._token), _StreamAuth(self._token)]
            options = list(self._options.items())
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(target, self._credentials, options, interceptors=interceptors)
            else:
                channel = grpc.aio.insecure_channel(target, options, interceptors=interceptors)
            try:
                if self._token is not None:
                    self._token.stub = rpc.AuthStub(channel)
                    self._token.value = None
                    await self._token.renew(None)
            except BaseException:
                await channel.close()
                raise
            self.channel = channel
            self.auth_stub = self._token.stub if self._token else None
            self.kvstub = rpc.KVStub(channel)
            self.clusterstub = rpc.ClusterStub(channel)
            self.leasestub = rpc.LeaseStub(channel)
            self.maintenancestub = rpc.MaintenanceStub(channel)
            self._watcher = aetcd.watcher.Watcher(rpc.WatchStub(channel), timeout=self._timeout)
            self._connected.set()

    async def fail_over(self) -> None:
        """Move to the next member of the cluster after the current one stopped answering.

        Calls in flight on the old channel fail and their callers retry on the new one. Several
        retry loops notice one outage together, so it moves at most once a second."""
        now = time.monotonic()
        if len(self.endpoints) < 2 or now - self._failed_over_at < 1.0 or not self._connected.is_set():
            return
        self._failed_over_at = now
        old_endpoint, old_channel = self.endpoint, self.channel
        index = (self.endpoints.index(self.endpoint) + 1) % len(self.endpoints)
        self.endpoint = self.endpoints[index]
        self._host, self._port = split_endpoint(self.endpoint)
        log.warning("etcd member %s is not answering; switching to %s", old_endpoint, self.endpoint)
        self._connected.clear()
        try:
            await self.connect()
        finally:
            if old_channel is not None:
                self._retire(old_channel)

    def _retire(self, channel: grpc.aio.Channel) -> None:
        """Close the old member's channel in the background, after a grace period as long as a
        request's deadline. Closing it at once would cancel the calls other tasks still have on
        it, and grpc.aio raises CancelledError in whoever awaits a cancelled call: a heartbeat
        handler or a retry loop would take that for a request to stop. Unary calls end within
        the grace on their own deadline; streams still open then are cut off (being_cancelled()
        tells their owners it was not meant for them)."""
        async def close() -> None:
            try:
                await channel.close(grace=self._timeout)
            finally:
                self._retired.discard(channel)
        self._retired.add(channel)
        task = asyncio.create_task(close(), name="close a left etcd member's channel")
        self._retiring.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        """Close the channel and any left behind, without waiting for their grace."""
        await super().close()
        for channel in list(self._retired):
            await channel.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def refresh_lease(self, lease_id: int) -> rpc.LeaseKeepAliveResponse | None:
        """Renew a lease once, on a keepalive stream that is closed before returning.

        aetcd's version returns from inside `async for` over the stream, leaving the call, its
        response generator and the task that writes its requests to the garbage collector.
        Like aetcd's: None when etcd ends the stream without an answer, aetcd's exceptions for
        gRPC errors."""
        await self.connect()
        call = self.leasestub.LeaseKeepAlive(timeout=self._timeout, metadata=self.metadata)
        try:
            await call.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
            response = await call.read()
            await call.done_writing()  # etcd then ends the stream
            await call.code()  # and nothing of the call outlives this method
        except grpc.aio.AioRpcError as exc:
            aetcd.exceptions._handle_exception(exc)  # raises aetcd's ClientError for it
            raise
        finally:
            if not call.done():
                call.cancel()
        return None if response is grpc.aio.EOF else response

    async def renew_token(self, stale: BaseException | None = None) -> None:
        """Get a fresh token if `stale` says etcd forgot ours (a no-op without credentials)."""
        if self._token is not None and (stale is None or is_stale_token(stale)):
            await self._token.renew(self._token.value)

    async def probe(self, timeout: float | None = None) -> None:
        """A cheap round trip that fails fast when nothing answers (maintenance Status)."""
        await self.connect()
        await self.maintenancestub.Status(rpc.StatusRequest(), timeout=timeout or self._timeout)


async def recover(client: aetcd.Client, exc: BaseException) -> None:
    """After a failed call: renew the token if that may be the cause. Never raises.

    etcd refuses a watch made with a forgotten token as "permission denied" (a canceled
    watch, not an auth error), so that counts too; renewing for a real lack of permission
    only costs one Authenticate per retry.
    """
    if not isinstance(client, Client):
        return
    denied = isinstance(exc, WatchCanceled) and "permission denied" in exc.reason
    try:
        if denied or is_stale_token(exc):
            await client.renew_token()
        elif is_unavailable(exc):
            await client.fail_over()
    except Exception:
        pass  # the caller's retry loop will see the failure again


def request_timeout(client: object) -> float:
    """The per-request deadline a client was built with (aetcd keeps it private), 5 s if none."""
    return getattr(client, "_timeout", None) or 5.0


def is_unavailable(exc: BaseException) -> bool:
    """True when the member we talk to is gone or cut off (not when it refused a request)."""
    cause = exc.__cause__ if isinstance(exc, aetcd.exceptions.ClientError) and exc.__cause__ else exc
    if isinstance(cause, grpc.aio.AioRpcError):
        return cause.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return isinstance(exc, (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError,
                            asyncio.TimeoutError)) or (isinstance(exc, EtcdError) and "closed" in str(exc))


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EtcdError(f"cannot read etcd {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        # grpc takes only PEM, and would take an empty CA as "the system's CAs" and fail later
        # with a TLS error; under the shipped unit this is a credential whose file is missing
        raise EtcdError(f"etcd {what} {path} holds no PEM data")
    return data


def channel_credentials(settings: EtcdSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials from the settings' files, or None for plaintext."""
    if settings.ca is None:
        if settings.cert or settings.key:
            raise EtcdError("etcd client certificate given without a CA (set the etcd CA file too)")
        return None
    if bool(settings.cert) != bool(settings.key):
        raise EtcdError("etcd client certificate and key must be given together")
    return grpc.ssl_channel_credentials(root_certificates=_read(settings.ca, "CA file"),
                                        private_key=_read(settings.key, "key file"),
                                        certificate_chain=_read(settings.cert, "certificate file"))


async def connect(settings: EtcdSettings) -> Client:
    """A connected client on the first endpoint, in order, that answers a Status call."""
    if not settings.endpoints:
        raise EtcdError("no etcd endpoint given")
    if bool(settings.user) != bool(settings.password):
        raise EtcdError("etcd user and password must be given together")
    credentials = channel_credentials(settings)
    reasons: list[str] = []
    unreachable = True
    for endpoint in settings.endpoints:
        client = Client(endpoint, credentials=credentials, user=settings.user, password=settings.password,
                        timeout=settings.timeout, others=settings.endpoints, observe=settings.observe)
        try:
            async with asyncio.timeout(settings.timeout):
                await client.probe()
            return client
        except Exception as exc:  # TimeoutError included
            reasons.append(f"{endpoint}: {_with_hint(describe(exc), credentials is not None)}")
            unreachable = unreachable and is_unavailable(exc)
            await client.close()
    names = ", ".join(settings.endpoints)
    raise EtcdError(f"cannot reach etcd at {names} ({'; '.join(reasons)})", unreachable=unreachable)


async def connect_waiting(settings: EtcdSettings, wait: float, waiting: Callable[[str], None]) -> Client:
    """connect(), tried again with backoff for up to `wait` seconds while no member answers.

    A controller often starts beside its etcd (a reboot, units started together, a loaded host)
    and should not lose that race; `waiting` hears the first failure once. A refusal (bad
    credentials, TLS) is not waited out: it fails at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    delay = 0.5
    told = False
    while True:
        try:
            return await connect(settings)
        except EtcdError as exc:
            if not exc.unreachable or loop.time() + delay > deadline:
                raise
            if not told:
                waiting(f"{exc}; trying again for up to {wait:g} s")
                told = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


class WatchStream:
    """One etcd watch on its own gRPC stream, yielding raw `WatchResponse`s.

    Unlike aetcd's watcher this keeps whole responses (so the events of one transaction stay
    together and progress notifications are visible) and turns compaction and cancellation
    into exceptions the caller handles by re-reading. It never reconnects: callers re-open it
    from the last revision they applied.
    """

    def __init__(self, client: aetcd.Client, key: bytes, range_end: bytes | None = None,
                 start_revision: int = 0, progress_notify: bool = False) -> None:
        self._client = client
        self._request = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=key, range_end=range_end or b"", start_revision=start_revision, progress_notify=progress_notify))
        self._call: grpc.aio.StreamStreamCall | None = None

    async def __aenter__(self) -> WatchStream:
        await self._client.connect()
        self._call = rpc.WatchStub(self._client.channel).Watch(metadata=REQUIRE_LEADER)
        try:
            await self._call.write(self._request)
        except BaseException:
            self._call.cancel()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._call is not None:
            self._call.cancel()

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> rpc.WatchResponse:
        assert self._call is not None, "iterated outside `async with`"
        response = await self._call.read()
        if response is grpc.aio.EOF:
            raise EtcdError("etcd closed the watch stream")
        if response.compact_revision:
            raise WatchCompacted(response.compact_revision)
        if response.canceled:
            raise WatchCanceled(response.cancel_reason)
        return response


def event_revision(response: rpc.WatchResponse) -> int:
    """The revision a response proves we have seen everything up to, or 0 if it proves nothing.

    Events carry their own revision. A bare response (not `created`) is a progress
    notification, which etcd only sends to a watcher that has caught up, so its header
    revision is safe. The `created` response's header is the store's revision at creation,
    which a watch starting in the past has not delivered yet.
    """
    if response.events:
        return response.events[-1].kv.mod_revision
    if response.created:
        return 0
    return response.header.revision

