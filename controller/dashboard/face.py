"""`--http-listen`: the dashboard's listener, on the agent's HTTP stack (agent/http: the
connection guard, the body limit, GuardedSite), on the controller's loop.

The listener follows the controller's gRPC rules: with --tls-cert/--tls-key/--tls-ca it is
HTTPS with the same certificate, asking for (not requiring) a client certificate signed by
the same CA (a browser without one logs in with a token instead); without TLS it serves
loopback only, unless --http-insecure says otherwise.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import cast

from aiohttp import web

from fleetvisor.agent.config.model import HttpLimits
from fleetvisor.agent.http.guard import Guard
from fleetvisor.agent.http.server import guard_middleware, serve_guarded
from fleetvisor.agent.mainlog import MainLog
from fleetvisor.agent.security.guard import Gate, InsecureListen, Mode, mode_for
from fleetvisor.agent.security.tlsfiles import TlsMaterial

from ..fleet import Fleet
from ..leadership import Leadership
from ..service import ControllerServicer
from ..xmlrpc_face import HttpLog
from .api import Api
from .auth import Authenticator, json_errors, security_headers
from .calls import Calls
from .events import Streams
from .tokens import Tokens

log = logging.getLogger("fleetvisor.controller")
STATIC = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}


class DashboardConfigError(ValueError):
    """A --http-* setting that cannot be served; the message says what to pass."""


@dataclass(frozen=True)
class DashboardSettings:
    listen: str  # HOST:PORT
    insecure: bool = False
    anonymous_read: bool = False
    advertise: str = ""  # HOST:PORT browsers reach it at (default: the listen address)

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise DashboardConfigError(f"--http-listen {self.listen}: give HOST:PORT")
        return host.strip("[]"), int(port)

    def mode(self, tls: bool) -> Mode:
        host, _ = self.address()
        try:
            return mode_for(host, tls, self.insecure)
        except InsecureListen as exc:
            raise DashboardConfigError(f"dashboard: {exc}: pass --tls-cert, --tls-key and --tls-ca, or "
                                       "--http-insecure to send sessions in plaintext") from None


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def ssl_context(tls: TlsMaterial) -> ssl.SSLContext:
    """Server TLS with the controller's certificate; a client certificate is optional, and when
    given it must chain to the fleet's CA (the handshake fails otherwise).

    A rotated certificate (SIGHUP, or files found changed, as for gRPC) is taken by the next
    handshake: the SNI callback looks at the files and hands the connection a context with the
    new set. (The CA that checks client certificates is the one read at startup.)"""
    outer = _context(tls)
    generation, current = tls.generation, outer

    def follow(ssl_object: ssl.SSLObject, _name: str | None, _context_: ssl.SSLContext) -> None:
        nonlocal generation, current
        tls.refresh()
        if generation != tls.generation:
            generation, current = tls.generation, _context(tls)
        if current is not outer:
            ssl_object.context = current

    outer.sni_callback = follow
    return outer


def _context(tls: TlsMaterial) -> ssl.SSLContext:
    now = tls.current
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=now.ca.decode())
    with tempfile.TemporaryDirectory() as scratch:  # ssl loads a chain from files only; 0700, gone at once
        cert, key = Path(scratch, "cert.pem"), Path(scratch, "key.pem")
        cert.write_bytes(now.cert)
        key.touch(mode=0o600)
        key.write_bytes(now.key)
        context.load_cert_chain(cert, key)
    return context


class DashboardFace:
    def __init__(self, settings: DashboardSettings, *, servicer: ControllerServicer, gate: Gate, fleet: Fleet,
                 leadership: Leadership, tokens: Tokens, tls: TlsMaterial | None,
                 limits: HttpLimits | None = None) -> None:
        self.settings = settings
        self.mode = settings.mode(tls is not None)
        self.tls = tls
        self.limits = limits or HttpLimits()
        self.streams = Streams()
        auth = Authenticator(tokens, gate, tls is not None, settings.anonymous_read)
        self.api = Api(auth, Calls(servicer, gate), fleet, leadership, self.streams, self.limits)
        host, port = settings.address()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._sock = socket.create_server((host, port), family=family, backlog=128)
        except OSError as exc:
            raise DashboardConfigError(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        if self.settings.advertise:
            return f"{scheme}://{self.settings.advertise}/"
        host = self.settings.address()[0]
        if host in ("", "0.0.0.0", "::"):
            host = socket.getfqdn()
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def make_app(self, guard: Guard) -> web.Application:
        app = web.Application(middlewares=[guard_middleware(guard), json_errors], client_max_size=self.limits.max_body)
        app.on_response_prepare.append(security_headers)
        self.api.install(app)
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._file)
        app.on_shutdown.append(self._close_streams)
        return app

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = STATIC.get(name)
        if kind is None or name == "index.html":
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=kind, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def _close_streams(self, _app: web.Application) -> None:
        self.streams.cancel_all()

    async def start(self) -> None:
        guard = Guard(self.limits)
        context = ssl_context(self.tls) if self.tls is not None else None
        self._runner = await serve_guarded(self.make_app(guard), self._sock, guard, cast(MainLog, HttpLog()), context)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sock.close()

    def describe(self) -> str:
        anonymous = ", anonymous read-only" if self.settings.anonymous_read else ""
        return f"fleet dashboard on {self.url} ({self.mode.value}{anonymous})"
