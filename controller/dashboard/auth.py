"""Who a dashboard request is, and whether a write may be what it says: fail closed.

Identity, in this order: the session cookie (a token `fleetctl dashboard-login` minted, handed
over once by the page), else the verified client certificate of a TLS connection, else the
anonymous viewer when `--http-anonymous-read` was given, else nobody (401). A plaintext
connection on loopback is not "local": a browser there is reachable by any site it visits.

Writes are POSTs that carry the session's CSRF token (an HMAC of the token's id, or of the
certificate's serial) in a header, from a page of this very origin (Origin, else Referer).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from fleetvisor.agent.security.guard import Gate, Mode, Refused
from fleetvisor.agent.security.identity import LOCAL_ROLE, Identity

from .tokens import TokenError, Tokens

COOKIE = "fleetvisor_session"
CSRF_HEADER = "X-CSRF-Token"
ANONYMOUS = "anonymous"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin"}


@dataclass(frozen=True)
class Session:
    who: Identity
    binding: str  # what the CSRF token is bound to: the token id, or the certificate's serial
    how: str      # "token", "certificate" or "anonymous"
    expires_at: float = 0.0
    key_id: str = ""  # a token's: the key that signed it (a rotation ends the session)

    @property
    def anonymous(self) -> bool:
        return self.how == ANONYMOUS


class Unauthenticated(Exception):
    """No identity: the message says how to get one."""


def json_error(status: int, message: str) -> web.Response:
    """Every refusal of the API: one line, as JSON."""
    return web.json_response({"error": message.splitlines()[0] if message else str(status)}, status=status)


@dataclass
class Authenticator:
    tokens: Tokens
    gate: Gate
    tls: bool
    anonymous_read: bool

    def csrf(self, session: Session) -> str:
        if not self.tokens.key:
            return ""  # no key, no write: never a guessable token
        return hmac.new(self.tokens.key, f"csrf:{session.how}:{session.binding}".encode(), hashlib.sha256).hexdigest()

    def still_valid(self, session: Session) -> str | None:
        """Why a session that was good when its live view opened is no longer, or None."""
        if session.expires_at and time.time() >= session.expires_at:
            return "the session expired: run `fleetctl dashboard-login` again"
        if session.how == "token" and session.key_id != self.tokens.key_id:
            return "the dashboard key was rotated: run `fleetctl dashboard-login` again"
        return None

    def session(self, request: web.Request) -> Session:
        """Raises Unauthenticated (a bad cookie is not passed over for a weaker identity)."""
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return self.from_token(cookie)
        pem = peer_pem(request) if self.tls else None
        if pem is not None:
            try:
                who = self.gate.identify_pem(pem)
            except Refused as exc:
                raise Unauthenticated(str(exc)) from None
            return Session(who, who.serial, "certificate")
        if self.anonymous_read:
            return Session(Identity("viewer", ANONYMOUS, cluster=self.gate.cluster), "", ANONYMOUS)
        raise Unauthenticated("log in: run `fleetctl dashboard-login` and open the URL it prints")

    def from_token(self, token: str) -> Session:
        try:
            claims = self.tokens.verify(token)
            who = self.gate.vet(claims.identity)
        except (TokenError, Refused) as exc:
            raise Unauthenticated(f"the session is not valid: {exc}") from None
        if who.role == LOCAL_ROLE and self.gate.mode is not Mode.LOCAL:
            # minted by a controller of this cluster serving plaintext on loopback: not a login here
            raise Unauthenticated("the session is not valid here: a loopback login is for a loopback controller")
        return Session(who, claims.token_id, "token", claims.expires_at, self.tokens.key_id)

    def set_cookie(self, response: web.Response, token: str, expires_at: float) -> None:
        response.set_cookie(COOKIE, token, max_age=max(1, int(expires_at - time.time())), path="/",
                            httponly=True, samesite="Strict", secure=self.tls)

    def write_refusal(self, request: web.Request, session: Session | None) -> str | None:
        """Why this state-changing request must not run, or None."""
        if request.method != "POST":
            return "state-changing requests are POSTs"
        if not same_origin(request):
            return "the request does not come from this dashboard's origin"
        if session is None:
            return None  # the login itself: the token is its own proof
        if session.anonymous:
            return "anonymous visitors may only read: log in with `fleetctl dashboard-login`"
        given, expected = request.headers.get(CSRF_HEADER, ""), self.csrf(session)
        if not given or not expected or not hmac.compare_digest(given, expected):
            return f"missing or wrong {CSRF_HEADER} header: reload the page"
        return None


def same_origin(request: web.Request) -> bool:
    """Origin (else Referer) names this host: a form or script of another site does not."""
    own = f"{request.scheme}://{request.host}"
    origin = request.headers.get("Origin")
    if origin:
        return origin == own
    referer = request.headers.get("Referer", "")
    return referer == own or referer.startswith(own + "/")


def peer_pem(request: web.Request) -> bytes | None:
    """The client certificate TLS verified against the fleet's CA, as PEM; None without one."""
    import ssl

    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der).encode() if der else None


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """The router's own refusals (404, 405) as one line of JSON too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return json_error(exc.status, exc.reason)


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, streams too, before its headers are sent (aiohttp's on_response_prepare)."""
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Cache-Control", "no-store")
