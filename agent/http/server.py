"""The HTTP face: supervisord's HTTP servers, served by aiohttp on the agent's loop.

Each configured server (already bound, see `listeners`) gets its own aiohttp application,
because each has its own credentials. Every path is behind the server's basic auth when it
has a username: /RPC2 (XML-RPC), /logtail and /mainlogtail (log streams), /metrics
(Prometheus) and the web page.

A wrong or missing password is a bare 401 with a Basic challenge; nothing else is revealed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..caller import Caller
from ..config.model import HttpLimits, HttpServerConfig
from ..mainlog import Level, MainLog
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..metrics import Metrics
from ..rpc.fleetvisor_api import FleetvisorNamespace
from ..rpc.supervisor_api import SupervisorNamespace
from ..rpc.xmlrpc import Dispatcher
from ..timeouts import wait_within
from . import logtail
from . import web as web_page
from .accepts import AcceptTrouble
from .guard import Guard
from .listeners import Listener, rpc_namespaces

if TYPE_CHECKING:
    from ..supervisor import Supervisor

CORE = web.AppKey("core", object)
GUARD = web.AppKey("guard", Guard)
# How long in-flight requests get to finish once the daemon stops serving. Requests waiting
# on processes settle while the core stops them, before the servers close.
SHUTDOWN_TIMEOUT = 2.0
REALM = "default"

_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
            413: "Request Entity Too Large", 500: "Internal Server Error"}


def error_response(status: int) -> web.Response:
    return web.Response(status=status, text=f"{status} {_REASONS.get(status, '')}\n")


# -- authentication ----------------------------------------------------------------------------

def password_matches(stored: str, given: str) -> bool:
    """supervisord's rule: a stored ``{SHA}<hex>`` is the SHA-1 of the password."""
    if stored.startswith("{SHA}"):
        digest = hashlib.sha1(given.encode("utf-8")).hexdigest()
        return hmac.compare_digest(stored[5:].lower(), digest)
    return hmac.compare_digest(stored.encode("utf-8"), given.encode("utf-8"))


def _unauthorized() -> web.Response:
    response = error_response(401)
    response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    response.force_close()
    return response


def auth_middleware(username: str, password: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def authenticate(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
        scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "basic":
            return _unauthorized()
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return error_response(400)
        user, _, given = decoded.partition(":")
        user_ok = hmac.compare_digest(user.encode("utf-8"), username.encode("utf-8"))
        if not (password_matches(password, given) and user_ok):
            return _unauthorized()
        return await handler(request)

    return authenticate


def body_too_large(limit: int) -> web.Response:
    response = web.Response(status=413, text=(
        f"413 Request Entity Too Large: the request body is over the {limit}-byte limit"
        " (http_max_body in [fleetvisor] raises it)\n"))
    response.force_close()
    return response


async def read_body(request: web.Request, limits: HttpLimits) -> bytes | web.Response:
    """The request body, or the answer that refuses it: over `limits.max_body` (told by
    Content-Length before anything is read, or found while reading a chunked body) or not
    all there within `limits.body_timeout` seconds."""
    if request.content_length is not None and request.content_length > limits.max_body:
        return body_too_large(limits.max_body)
    try:
        async with asyncio.timeout(limits.body_timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return body_too_large(limits.max_body)
    except TimeoutError:
        response = web.Response(status=408, text=(
            f"408 Request Timeout: the request body did not arrive within {limits.body_timeout:g}s\n"))
        response.force_close()
        return response


def guard_middleware(guard: Guard) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Tells the guard a request is being served, so its connection is not timed out."""
    @web.middleware
    async def track(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        transport = request.transport
        guard.request_started(transport)
        try:
            return await handler(request)
        finally:
            guard.request_ended(transport)

    return track


# -- the request log ---------------------------------------------------------------------------

def request_line(request: web.BaseRequest, status: int, length: int, when: float) -> str:
    """supervisord's trace line for one answered request, in the common log format.

    A unix-socket client has no address; supervisord names it ``localhost:0``.
    """
    peer = request.transport.get_extra_info("peername") if request.transport else None
    host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("localhost", 0)
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(when))
    version = f"HTTP/{request.version.major}.{request.version.minor}"
    return f'{host}:{port} - - [{stamp}] "{request.method} {request.raw_path} {version}" {status} {length}'


def request_log_middleware(core: Supervisor) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Writes `request_line` at trace level, after the answer, for every request (401s too)."""
    @web.middleware
    async def log_request(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                          ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # the router's 404 and 405 are raised
            if core.log.is_enabled(Level.TRAC):
                core.log.trace(request_line(request, exc.status, exc.content_length or 0, time.time()))
            raise
        if core.log.is_enabled(Level.TRAC):
            # a streamed answer (/logtail) is complete here; a plain one is not sent yet
            length = response.body_length if response.prepared else response.content_length or 0
            core.log.trace(request_line(request, response.status, length, time.time()))
        return response

    return log_request


# -- the application ---------------------------------------------------------------------------

def rpc_handler(dispatcher: Dispatcher, limits: HttpLimits) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """POST /RPC2: the body read within `limits`, answered by `dispatcher`."""
    async def rpc(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return error_response(400)
        body = await read_body(request, limits)
        if isinstance(body, web.Response):
            return body
        reply = await dispatcher.handle(body)
        if reply.status != 200:
            return error_response(reply.status)
        return web.Response(body=reply.body, content_type="text/xml")
    return rpc


def make_app(core: Supervisor, server: HttpServerConfig, guard: Guard | None = None
             ) -> web.Application:
    guard = guard or Guard(core.config.http_limits)
    middlewares = [guard_middleware(guard), request_log_middleware(core)]
    if server.username is not None and server.password is not None:
        middlewares.append(auth_middleware(server.username, server.password))
    app = web.Application(middlewares=middlewares, client_max_size=guard.limits.max_body)
    app[CORE] = core
    app[GUARD] = guard
    caller = Caller("xmlrpc", server.username or "")
    namespaces = {name: SupervisorNamespace(core, caller) for name in rpc_namespaces(core.config)}
    dispatcher = Dispatcher(namespaces, core.log, core.tally.rpc_calls,
                            unlisted={"fleetvisor": FleetvisorNamespace(core, caller)})
    metrics = Metrics(core)

    rpc = rpc_handler(dispatcher, guard.limits)

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=await metrics.scrape(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_get("/metrics", scrape)
    # supervisord matches on the prefix: /RPC2 and anything under it.
    app.router.add_route("*", "/RPC2", rpc)
    app.router.add_route("*", "/RPC2{rest:.*}", rpc)
    logtail.install(app, core)
    web_page.install(app, core)
    return app


class GuardedSite(web.SockSite):
    """aiohttp's site on an already bound socket, with every connection behind `guard`
    (and TLS with `ssl_context`: the controller's dashboard)."""

    def __init__(self, runner: web.AppRunner, sock: object, guard: Guard,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context)  # type: ignore[arg-type]
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._guard.protocol_factory(server),
                                                sock=self._sock, backlog=self._backlog, ssl=self._ssl_context)


async def serve_guarded(app: web.Application, sock: object, guard: Guard, trouble: MainLog,
                        ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Serve `app` on a bound socket behind `guard`, as the controller's faces (XML-RPC, the
    dashboard) do: aiohttp's own reports silenced, accept failures told to `trouble`."""
    logging.getLogger("aiohttp").addHandler(logging.NullHandler())
    AcceptTrouble(trouble).install(asyncio.get_running_loop())
    runner = web.AppRunner(app, handle_signals=False, access_log=None, handler_cancellation=True,
                           shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    await GuardedSite(runner, sock, guard, ssl_context).start()
    return runner


class HttpFace:
    """The HTTP servers of one run of the daemon, on the running loop."""

    def __init__(self, core: Supervisor, listeners: list[Listener]) -> None:
        self.core = core
        self.listeners = listeners
        self._runners: list[web.AppRunner] = []
        self._sites: list[GuardedSite] = []
        self._guards: list[Guard] = []

    async def start(self) -> None:
        # aiohttp reports through `logging`; with no handler configured Python would print
        # tracebacks of dropped connections on our stderr. The main log is our log.
        logging.getLogger("aiohttp").addHandler(logging.NullHandler())
        AcceptTrouble(self.core.log).install(asyncio.get_running_loop())
        for listener in self.listeners:
            guard = Guard(self.core.config.http_limits)
            runner = web.AppRunner(make_app(self.core, listener.config, guard),
                                   handle_signals=False, access_log=None,
                                   handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT)
            await runner.setup()
            self._runners.append(runner)
            site = GuardedSite(runner, listener.sock, guard)
            await site.start()
            self._sites.append(site)
            self._guards.append(guard)

    async def drain(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Stop accepting and answer what the accepted connections ask, before a re-exec: a
        connection accepted just now would otherwise be closed before its first request is
        read (its client sees the call fail). Connections still waiting in the listening
        sockets' backlog are the next agent's. At most `timeout` seconds."""
        sites, self._sites = self._sites, []
        for site in sites:
            await site.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for guard in self._guards:
            if not guard.settled():
                guard.settling = asyncio.Event()
                await wait_within(guard.settling.wait(), max(0.0, deadline - loop.time()))

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()
