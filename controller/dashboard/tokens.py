"""Dashboard login tokens: the identity of a certificate's holder, signed for a short while.

`fleetctl dashboard-login` asks a controller (over its mutual-TLS identity) to mint one; the
browser hands it to the dashboard once and keeps a session cookie instead. A token is
``base64url(JSON claims) "." base64url(HMAC-SHA256)``. The claims hold who (role, name, groups,
cluster), the certificate serial (so revoking the certificate kills its tokens), an id and the
expiry: nothing secret. The key lives in etcd under the cluster prefix, made once by whichever
controller comes first, so every controller of the cluster accepts every controller's tokens.

`fleetctl dashboard-rotate-key` (an admin) writes a new key; every controller follows the key
through its etcd mirror and from then on refuses tokens signed with the old one, with no grace
period: a rotation is what one does when a key may have leaked. Sessions end with their token
(an open live view at its next message); logging in again is the way back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleetvisor.agent.security.identity import LOCAL_ROLE, Identity, IdentityError, check_name

from .. import records
from ..mirror import Change, Mirror
from ..store import Put, Store

log = logging.getLogger("fleetvisor.controller")

DEFAULT_TTL = 3600.0
MAX_TTL = 12 * 3600.0
MAX_TOKEN_CHARS = 4096  # longer is refused unread
# People's certificates, and the plaintext loopback caller (who may do everything over gRPC
# there anyway); machines' certificates never log in to a web page.
MINTS = ("operator", "viewer", LOCAL_ROLE)


class TokenError(ValueError):
    """A token that identifies nobody; the message says why without echoing it."""


@dataclass(frozen=True)
class Claims:
    identity: Identity
    token_id: str
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_key(raw: bytes | None) -> bytes | None:
    """The key a store value holds (hex, at least 32 bytes), or None."""
    try:
        key = bytes.fromhex((raw or b"").decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return key if len(key) >= 32 else None


def key_id(key: bytes) -> str:
    """A short fingerprint that names a key in logs and answers, never the key."""
    return hashlib.sha256(b"fleetvisor dashboard key id:" + key).hexdigest()[:12]


async def rotate_key(store: Store) -> bytes:
    """A new cluster token key, written over the old one (every controller follows it)."""
    made = secrets.token_bytes(32)
    await store.compare_and_put([Put(records.DASHBOARD_KEY, made.hex().encode())])
    return made


async def ensure_key(store: Store) -> bytes:
    """The cluster's token key, made here if the store has none yet (one transaction: two
    controllers starting together still agree on one key)."""
    made = secrets.token_bytes(32)
    if await store.compare_and_put([Put(records.DASHBOARD_KEY, made.hex().encode())], {records.DASHBOARD_KEY: None}):
        log.info("made the cluster's dashboard token key")
        return made
    raw = store.get(records.DASHBOARD_KEY)
    if raw is None:
        got = await store.client.get(store.key(records.DASHBOARD_KEY))
        raw = got.value if got is not None else None
    key = parse_key(raw)
    if key is None:
        raise RuntimeError(f"the store's {records.DASHBOARD_KEY} key does not hold a token key; delete it to make one")
    return key


def refusal(who: Identity) -> str | None:
    """Why `who` may not have a dashboard token, or None."""
    if who.role in MINTS:
        return None
    return f"{who} may not log in to the dashboard: only operator and viewer certificates may"


class Tokens:
    """Mints and verifies tokens with one key; `clock` is a parameter so expiry is tested without waiting."""

    def __init__(self, key: bytes, cluster: str, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.cluster = cluster
        self._clock = clock

    @property
    def key_id(self) -> str:
        return key_id(self.key)

    def follow(self, mirror: Mirror) -> Callable[[], None]:
        """Take the key etcd holds whenever it changes (a rotation by any controller); returns the
        unsubscribe. A key deleted or unreadable there leaves no key: every token is refused
        (fail closed) until a good one is written."""
        def changed(changes: list[Change]) -> None:
            if any(c.key == records.DASHBOARD_KEY for c in changes):
                self.use(parse_key(mirror.get(records.DASHBOARD_KEY)))
        unsubscribe = mirror.subscribe(changed)
        if (current := parse_key(mirror.get(records.DASHBOARD_KEY))) is not None:
            self.use(current)  # a rotation between reading the key and subscribing
        return unsubscribe

    def use(self, key: bytes | None) -> None:
        if key is None:
            log.error("the store's %s key holds no token key: dashboard logins are refused until an admin "
                      "runs `fleetctl dashboard-rotate-key`", records.DASHBOARD_KEY)
            self.key = b""
        elif key != self.key:
            self.key = key
            log.info("dashboard token key %s in use: tokens signed with any other are refused", self.key_id)

    def _sign(self, body: str) -> str:
        if not self.key:
            raise TokenError("this cluster has no dashboard token key: an admin runs `fleetctl dashboard-rotate-key`")
        return _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())

    def mint(self, who: Identity, ttl: float = DEFAULT_TTL) -> tuple[str, Claims]:
        """Raises TokenError for a TTL out of bounds (`refusal` first says whether `who` may log in)."""
        if ttl == 0:
            ttl = DEFAULT_TTL
        if not 0 < ttl <= MAX_TTL:
            raise TokenError(f"a dashboard token lives at most {MAX_TTL / 3600:g}h; asked for {ttl:g}s")
        # the cluster is this one's: a loopback caller's identity has none of its own
        who = Identity(who.role, who.name, who.groups, self.cluster, who.serial)
        claims = Claims(who, secrets.token_hex(8), round(self._clock() + ttl, 3))
        body = _b64(json.dumps({"v": 1, "c": who.cluster, "r": who.role, "n": who.name, "g": sorted(who.groups),
                                "s": who.serial, "id": claims.token_id, "exp": claims.expires_at},
                               separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}", claims

    def verify(self, token: str) -> Claims:
        """The claims of a genuine, unexpired token of this cluster. Raises TokenError."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise TokenError("not a dashboard token")
        body, signature = token.split(".")
        if not hmac.compare_digest(self._sign(body), signature):
            raise TokenError("the token's signature does not match (forged, or from another cluster)")
        try:
            data = json.loads(_unb64(body))
            who = Identity(str(data["r"]), check_name("user", str(data["n"])),
                           frozenset(check_name("group", str(g)) for g in data["g"]), str(data["c"]), str(data["s"]))
            claims = Claims(who, str(data["id"]), float(data["exp"]))
        except (binascii.Error, ValueError, KeyError, TypeError, IdentityError):
            raise TokenError("the token's claims do not read") from None
        if data.get("v") != 1 or who.role not in MINTS or who.cluster != self.cluster:
            raise TokenError("the token is not a login to this cluster's dashboard")
        if claims.expires_at <= self._clock():
            raise TokenError("the token has expired: run `fleetctl dashboard-login` again")
        return claims
