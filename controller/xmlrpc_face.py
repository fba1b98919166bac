"""The controller's supervisord-compatible HTTP face (`--xmlrpc-listen`): /RPC2 and /logtail.

Built from the agent's HTTP pieces, so both faces answer alike: its XML-RPC dispatcher (wire
rules, fault structs, system.multicall and introspection), basic auth (``{SHA}`` passwords
too), the connection guard (per-client cap, header and idle timeouts) and the body limit.

Who a caller is: with a username, the operator (or viewer, `--xmlrpc-role`) of that name and
`--xmlrpc-groups`, checked against the fleet's policies like a certificate's holder; without
one, on loopback or a unix socket (mode 0700) only, the same "local" caller as plaintext gRPC
on loopback. Writes are audited under the user's name, marked as coming through XML-RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from fleetvisor.agent.config.model import HttpLimits
from fleetvisor.agent.faults import FaultError
from fleetvisor.agent.http.guard import Guard
from fleetvisor.agent.http.server import (
    auth_middleware,
    error_response,
    guard_middleware,
    rpc_handler,
    serve_guarded,
)
from fleetvisor.agent.mainlog import Level, MainLog
from fleetvisor.agent.rpc.xmlrpc import Dispatcher
from fleetvisor.agent.security.guard import LOOPBACK
from fleetvisor.agent.security.identity import LOCAL, Identity
from fleetvisor.v1 import agent_pb2 as apb

from . import tailing
from . import xmlrpc_shapes as shapes
from .audit import Refusals
from .authorize import Checks
from .errors import ControllerError, NotFound, PermissionDenied
from .fleet import Fleet
from .leadership import Leadership
from .xmlrpc_api import FleetSupervisor

log = logging.getLogger("fleetvisor.controller")
UNIX = "unix:"
HEAD = 1024  # bytes of history a /logtail stream starts with, as supervisord
SHUTDOWN_TIMEOUT = 2.0


class XmlRpcConfigError(ValueError):
    """A --xmlrpc-* setting that cannot be served; the message says what to pass."""


@dataclass(frozen=True)
class XmlRpcSettings:
    listen: str  # HOST:PORT, or unix:/path
    username: str | None = None
    password: str | None = None  # plain, or {SHA}hex as in supervisord.conf
    role: str = "operator"
    groups: frozenset[str] = frozenset()
    cluster: str = ""

    @property
    def unix_path(self) -> str | None:
        return self.listen[len(UNIX):] if self.listen.startswith(UNIX) else None

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            raise XmlRpcConfigError(f"--xmlrpc-listen {self.listen}: give HOST:PORT or unix:/PATH")
        return host.strip("[]"), int(port)

    def check(self) -> None:
        """Refuse what must not be served: credentials half given, nobody's login off loopback."""
        if (self.username is None) != (self.password is None):
            raise XmlRpcConfigError("--xmlrpc-user needs a password ($FLEETVISOR_XMLRPC_PASSWORD or "
                                    "--xmlrpc-password-file), and a password needs --xmlrpc-user")
        if self.unix_path is not None:
            if not self.unix_path.startswith("/"):
                raise XmlRpcConfigError(f"--xmlrpc-listen {self.listen}: the socket path must be absolute")
            return
        host, _ = self.address()
        if self.username is None and host not in LOOPBACK:
            raise XmlRpcConfigError(f"refusing to serve XML-RPC on {host or '0.0.0.0'} without a login: "
                                    "pass --xmlrpc-user (password from $FLEETVISOR_XMLRPC_PASSWORD), or "
                                    "listen on 127.0.0.1 or a unix socket")

    def identity(self) -> Identity:
        if self.username is None:
            return LOCAL
        return Identity(self.role, self.username, self.groups, self.cluster)


class HttpLog:
    """The dispatcher's main-log calls, onto the controller's logging."""

    def is_enabled(self, level: int) -> bool:
        return log.isEnabledFor(logging.DEBUG if level <= Level.DEBG else logging.INFO)

    def error(self, msg: str) -> None:
        log.error("xmlrpc: %s", msg)

    def warn(self, msg: str) -> None:
        log.warning("xmlrpc: %s", msg)

    def debug(self, msg: str) -> None:
        log.debug("xmlrpc: %s", msg)

    trace = debug


def _bind(settings: XmlRpcSettings) -> socket.socket:
    path = settings.unix_path
    if path is None:
        host, port = settings.address()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            return socket.create_server((host, port), family=family, backlog=128, reuse_port=False)
        except OSError as exc:
            raise XmlRpcConfigError(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from None
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.settimeout(1.0)
                probe.connect(path)
                raise XmlRpcConfigError(f"cannot listen on {path}: another process answers on it")
            except OSError:
                os.unlink(path)  # stale: nobody answers
            finally:
                probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)  # 0700 from the start, as supervisord's default chmod
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise XmlRpcConfigError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


class XmlRpcFace:
    """The fleet's supervisord endpoint, on the controller's loop."""

    def __init__(self, settings: XmlRpcSettings, fleet: Fleet, leadership: Leadership, checks: Checks,
                 refusals: Refusals | None, *, command_timeout: float, limits: HttpLimits | None = None) -> None:
        settings.check()
        self.settings = settings
        self.limits = limits or HttpLimits()
        who = settings.identity()
        name = settings.username or "local"
        self.namespace = FleetSupervisor(fleet, leadership, checks, refusals, who, f"{name} (xmlrpc)",
                                         command_timeout=command_timeout)
        self.dispatcher = Dispatcher({"supervisor": self.namespace}, cast(MainLog, HttpLog()))
        self.fleet = fleet
        self.checks = checks
        self.who = who
        self.command_timeout = command_timeout
        self._sock = _bind(settings)
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[object]] = set()

    @property
    def port(self) -> int:
        name = self._sock.getsockname()
        return name[1] if isinstance(name, tuple) else 0

    def describe(self) -> str:
        where = self.settings.unix_path or f"{self.settings.address()[0]}:{self.port}"
        login = f"basic auth as {self.settings.username}" if self.settings.username else "no login (local only)"
        return f"supervisor XML-RPC on {where} ({login})"

    def make_app(self, guard: Guard) -> web.Application:
        middlewares = [guard_middleware(guard)]
        if self.settings.username is not None and self.settings.password is not None:
            middlewares.append(auth_middleware(self.settings.username, self.settings.password))
        app = web.Application(middlewares=middlewares, client_max_size=self.limits.max_body)

        rpc = rpc_handler(self.dispatcher, self.limits)

        app.router.add_route("*", "/RPC2", rpc)
        app.router.add_route("*", "/RPC2{rest:.*}", rpc)
        app.router.add_route("*", "/logtail/{spec:.*}", self._logtail)
        app.on_shutdown.append(self._close_streams)
        return app

    async def start(self) -> None:
        guard = Guard(self.limits)
        self._runner = await serve_guarded(self.make_app(guard), self._sock, guard, cast(MainLog, HttpLog()))

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sock.close()
        path = self.settings.unix_path
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _close_streams(self, _app: web.Application) -> None:
        for task in list(self._streams):
            task.cancel()

    # -- /logtail/NODE/GROUP:NAME/stdout|stderr: supervisorctl's tail -f ---------------------------

    async def _logtail(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return error_response(400)
        spec = request.match_info.get("spec", "")
        stream = apb.STDOUT
        head, _, last = spec.rpartition("/")
        if last in ("stdout", "stderr") and shapes.NODE_SEP in head:
            spec, stream = head, apb.STDERR if last == "stderr" else apb.STDOUT
        try:
            fname = shapes.parse(spec)
        except FaultError:
            return error_response(404)
        if fname.name is None:
            return error_response(404)
        chunks = tailing.tail(self.fleet, self.checks, self.who, fname.node,
                              apb.TailLogRequest(name=fname.spec, stream=stream, last_bytes=HEAD, follow=True),
                              timeout=self.command_timeout)
        return await self._stream(request, chunks)

    async def _stream(self, request: web.Request, chunks: AsyncGenerator[apb.LogChunk, None]) -> web.StreamResponse:
        try:
            first = await anext(chunks)  # the agent's answer: the process and its file exist
        except (NotFound, PermissionDenied, StopAsyncIteration):
            return error_response(404)  # a process the caller may not read is not shown either
        except ControllerError as exc:
            log.warning("xmlrpc: /logtail %s: %s", request.match_info.get("spec", ""), exc)
            return error_response(404)
        response = web.StreamResponse(headers={"Content-Type": "text/plain;charset=utf-8",
                                               "X-Accel-Buffering": "no"})
        if request.version >= (1, 1):
            response.enable_chunked_encoding()
        task = asyncio.current_task()
        assert task is not None
        self._streams.add(task)
        try:
            await response.prepare(request)
            if first.data:
                await response.write(first.data)
            async for chunk in chunks:
                if chunk.data:
                    await response.write(chunk.data)
        except (ConnectionError, OSError, ControllerError):
            pass  # the client went away, or the agent's stream ended: end ours
        finally:
            self._streams.discard(task)
            await chunks.aclose()  # cancels the agent's stream
        return response
