"""The dashboard's HTTP API: JSON in, JSON out, one ControllerService method per call.

    POST /api/session          {"token": ...}: a token for a session cookie (the login)
    POST /api/logout
    GET  /api/whoami           who this is, what they may do, the CSRF token, this controller
    POST /api/rpc/METHOD       the method's request as JSON (proto3 JSON names); its answer
    GET  /api/events/status    SSE: the fleet's rows as they change
    GET  /api/events/operation/ID   SSE: one operation as it moves
    GET  /api/events/tail?node=N&name=GROUP:NAME&stream=stdout|stderr   SSE: a log, bounded

Only the methods in METHODS are served; a write (any verb but read) needs the CSRF header, and
anonymous visitors never write. Every refusal is one line of JSON with a 4xx status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf.json_format import ParseDict, ParseError
from google.protobuf.message import Message

from fleetvisor.agent.config.model import HttpLimits
from fleetvisor.agent.http.server import read_body
from fleetvisor.agent.security.policy import CONTROL, DEPLOY, READ
from fleetvisor.agent.security.rules import CONTROLLER_RULES
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import controller_pb2 as pb

from ..fleet import Fleet
from ..leadership import Leadership
from ..service import staleness_message
from .auth import ANONYMOUS, COOKIE, Authenticator, Session, Unauthenticated, json_error, same_origin
from .calls import CallFailed, Calls, to_json
from .events import COALESCE, PERIOD, TAIL_MAX_BYTES, TAIL_MAX_SECONDS, StreamLimit, Streams, sse
from .rows import ControlScope, Model, RowCache, diff, split

log = logging.getLogger("fleetvisor.controller")

METHODS: dict[str, type[Message]] = {
    "GetStatus": pb.StatusRequest, "ListNodes": pb.ListNodesRequest, "GetLeader": pb.GetLeaderRequest,
    "ListConfigs": pb.ListConfigsRequest, "ConfigHistory": pb.ConfigHistoryRequest,
    "GetConfigRevision": pb.GetConfigRevisionRequest, "ConfigStatus": pb.ConfigStatusRequest,
    "ListAudit": pb.ListAuditRequest, "ListOperations": pb.ListOperationsRequest,
    "GetOperation": pb.GetOperationRequest,
    "Control": pb.ControlRequest, "StartOperation": pb.StartOperationRequest,
    "PauseOperation": pb.GetOperationRequest, "ResumeOperation": pb.GetOperationRequest,
    "AbortOperation": pb.GetOperationRequest, "RollbackConfig": pb.RollbackConfigRequest,
}
MAX_BODY = 64 * 1024  # no dashboard request is near it: the page sends no configs


@dataclass
class Api:
    auth: Authenticator
    calls: Calls
    fleet: Fleet
    leadership: Leadership
    streams: Streams
    limits: HttpLimits

    def install(self, app: web.Application) -> None:
        app.router.add_post("/api/session", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_get("/api/whoami", self.whoami)
        app.router.add_post("/api/rpc/{method}", self.rpc)
        app.router.add_get("/api/events/status", self.status_events)
        app.router.add_get("/api/events/operation/{id}", self.operation_events)
        app.router.add_get("/api/events/tail", self.tail_events)

    # -- sessions -------------------------------------------------------------------------------

    def _session(self, request: web.Request) -> Session:
        return self.auth.session(request)

    async def _json(self, request: web.Request) -> dict[str, Any] | web.Response:
        limits = HttpLimits(max_body=min(self.limits.max_body, MAX_BODY), body_timeout=self.limits.body_timeout)
        body = await read_body(request, limits)
        if isinstance(body, web.Response):
            return json_error(body.status, body.text or "")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return json_error(400, "the request body is not JSON")
        if not isinstance(data, dict):
            return json_error(400, "the request body must be a JSON object")
        return data

    async def login(self, request: web.Request) -> web.StreamResponse:
        if refusal := self.auth.write_refusal(request, None):
            return json_error(403, refusal)
        data = await self._json(request)
        if isinstance(data, web.Response):
            return data
        token = data.get("token")
        if not isinstance(token, str) or not token:
            return json_error(400, "give the token `fleetctl dashboard-login` printed")
        try:
            session = self.auth.from_token(token)
        except Unauthenticated as exc:
            hook = self.calls.gate.on_refusal
            if hook is not None:  # as the guard audits an unusable certificate (the token is not named)
                await hook(None, f"dashboard login from {_host(request)}", str(exc))
            return json_error(401, str(exc))
        response = web.json_response(self._whoami(session))
        self.auth.set_cookie(response, token, session.expires_at)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not same_origin(request):
            return json_error(403, "the request does not come from this dashboard's origin")
        response = web.json_response({"ok": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        try:
            session = self._session(request)
        except Unauthenticated as exc:
            return json_error(401, str(exc))
        return web.json_response(self._whoami(session))

    def _whoami(self, session: Session) -> dict[str, Any]:
        who = session.who
        authorizer = self.calls.gate.authorizer
        may = {verb: not session.anonymous and authorizer.may(who, verb) for verb in (CONTROL, DEPLOY)}
        may[READ] = authorizer.may(who, READ)
        return {"name": who.name, "role": who.role, "groups": sorted(who.groups), "how": session.how,
                "expires_at": session.expires_at, "may": may,
                "csrf": "" if session.anonymous else self.auth.csrf(session), "controller": self._controller()}

    def _controller(self) -> dict[str, Any]:
        fresh = self.fleet.views.freshness()
        return {"id": self.fleet.id, "is_leader": self.leadership.is_leader,
                "leader_id": self.leadership.leader_id, "leader_address": self.leadership.leader_address,
                "etcd_unavailable": fresh.etcd_unavailable, "reason": fresh.reason if fresh.etcd_unavailable else ""}

    # -- one method ------------------------------------------------------------------------------

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        kind = METHODS.get(method)
        if kind is None:
            return json_error(404, f"no dashboard method {method[:60]!r}")
        try:
            session = self._session(request)
        except Unauthenticated as exc:
            return json_error(401, str(exc))
        writes = CONTROLLER_RULES.get(method) != READ
        if not same_origin(request):
            return json_error(403, "the request does not come from this dashboard's origin")
        if writes and (refusal := self.auth.write_refusal(request, session)):
            await self._audit_refusal(session, method, refusal)
            return json_error(403, refusal)
        data = await self._json(request)
        if isinstance(data, web.Response):
            return data
        try:
            message = ParseDict(data, kind())
        except ParseError as exc:
            return json_error(400, f"{method}: {str(exc).splitlines()[0] if str(exc) else 'bad request'}")
        try:
            reply = await self.calls.call(session.who, _host(request), method, message)
        except CallFailed as exc:
            return json_error(exc.status, exc.details)
        return web.json_response(to_json(reply))

    async def _audit_refusal(self, session: Session, method: str, reason: str) -> None:
        hook = self.calls.gate.on_refusal
        if hook is not None:
            await hook(session.who, f"/fleetvisor.v1.ControllerService/{method} (dashboard)", reason)

    # -- streams ---------------------------------------------------------------------------------

    async def _stream(self, request: web.Request, events: AsyncIterator[tuple[str, Any]]) -> web.StreamResponse:
        try:
            session = self._session(request)
        except Unauthenticated as exc:
            return json_error(401, str(exc))
        key = f"{session.who.role}:{session.who.name}" if not session.anonymous else f"{ANONYMOUS}:{_host(request)}"
        try:
            self.streams.enter(key)
        except StreamLimit as exc:
            return json_error(429, str(exc))
        request["session"] = session  # the events read it once they start
        # as the gRPC guard does for streams: revoking the certificate cuts its open views
        forget = self.calls.gate.follow(session.who, asyncio.current_task())
        try:
            return await sse(request, self._with_session(events, session), _stream_error)
        finally:
            forget()
            self.streams.leave(key)

    async def _with_session(self, events: AsyncIterator[tuple[str, Any]],
                            session: Session) -> AsyncIterator[tuple[str, Any]]:
        """`events` while the session holds (a token's expiry or a key rotation ends a live view too)."""
        async for item in events:
            if reason := self.auth.still_valid(session):
                yield "error", {"error": reason}
                return
            yield item

    async def status_events(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self._status(request))

    async def _status(self, request: web.Request) -> AsyncIterator[tuple[str, Any]]:
        session: Session = request["session"]
        who, host = session.who, _host(request)
        cache = RowCache()
        scope: ControlScope | None = None
        last: Model | None = None
        controller: dict[str, Any] | None = None
        beat = 0.0
        while True:
            seen = self.fleet.changes
            status, summary = await self.calls.status(who, host, pb.StatusRequest())
            authorizer = self.calls.gate.authorizer
            if scope is None or scope.authorizer is not authorizer:
                scope = ControlScope(authorizer, None if session.anonymous else who)
            stale = to_json(staleness) if (staleness := staleness_message(status.freshness)) else None
            digest = to_json(summary)
            if last is None:  # a first view: the summary and the nodes go out before the rows are built
                last = cache.head(status, digest, stale, scope)
                change = diff(None, last)
                change["more"] = sum(len(n.processes) for n in status.nodes)
                yield "status", self._timed(change, last, controller := self._controller())
                beat = time.monotonic()
            model = None
            for model in cache.steps(status, digest, stale, scope):
                if model is None:
                    await asyncio.sleep(0)  # a big view is built in slices: the loop runs between
            assert model is not None
            change = diff(last, model, cache.rebuilt)
            if time.monotonic() - beat >= PERIOD:  # ages move every second: not with every change
                self._timed(change, model)
                beat = time.monotonic()
            if (c := self._controller()) != controller:
                change["controller"] = controller = c
            if len(change) > 1:
                for message in split(change):
                    yield "status", message
                    await asyncio.sleep(0)  # the loop runs between two parts of a big view
            last = model
            await asyncio.sleep(COALESCE)
            await self.fleet.wait_change(PERIOD, since=seen)

    @staticmethod
    def _timed(change: dict[str, Any], model: Model, controller: dict[str, Any] | None = None) -> dict[str, Any]:
        """`change` with the heartbeats and this controller's clock (and its facts, when given)."""
        change["heartbeats"] = model.heartbeats
        change["now"] = time.time()
        if controller is not None:
            change["controller"] = controller
        return change

    async def operation_events(self, request: web.Request) -> web.StreamResponse:
        async def events() -> AsyncIterator[tuple[str, Any]]:
            session: Session = request["session"]
            ops = self.calls.stream(session.who, _host(request), "WatchOperation",
                                    pb.GetOperationRequest(id=request.match_info["id"]))
            async for op in ops:
                yield "operation", to_json(op)
            yield "end", {}
        return await self._stream(request, events())

    async def tail_events(self, request: web.Request) -> web.StreamResponse:
        node, name = request.query.get("node", ""), request.query.get("name", "")
        stream = apb.STDERR if request.query.get("stream") == "stderr" else apb.STDOUT
        if not node or not name:
            return json_error(400, "give node= and name= (GROUP:NAME)")

        async def events() -> AsyncIterator[tuple[str, Any]]:
            session: Session = request["session"]
            tail = pb.FleetTailRequest(node=node, request=apb.TailLogRequest(name=name, stream=stream,
                                                                             last_bytes=4096, follow=True))
            sent, started = 0, time.monotonic()
            async for chunk in self.calls.stream(session.who, _host(request), "TailLog", tail):
                text = chunk.data.decode("utf-8", errors="replace")
                sent += len(chunk.data)
                yield "log", {"text": text, "truncated": chunk.truncated}
                if sent >= TAIL_MAX_BYTES or time.monotonic() - started >= TAIL_MAX_SECONDS:
                    yield "end", {"reason": f"the tail stops after {TAIL_MAX_BYTES >> 20} MiB or "
                                            f"{TAIL_MAX_SECONDS / 60:g} minutes: follow it again to go on"}
                    return
            yield "end", {"reason": "the log stream ended"}
        return await self._stream(request, events())


def _stream_error(exc: Exception) -> str | None:
    if isinstance(exc, CallFailed):
        return exc.details
    return None


def _host(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""
