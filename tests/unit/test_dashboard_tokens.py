"""Dashboard tokens (controller/dashboard/tokens.py): signed claims that expire, with the clock
passed in, so expiry is tested without waiting."""

from __future__ import annotations

import base64
import json

import pytest

from fleetvisor.agent.security.identity import LOCAL, Identity
from fleetvisor.controller.dashboard.tokens import MAX_TTL, TokenError, Tokens, parse_key, refusal

ALICE = Identity("operator", "alice", frozenset({"admins"}), "prod", "1a2b")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_round_trips_the_identity_and_carries_nothing_secret() -> None:
    tokens = Tokens(b"k" * 32, "prod")
    token, claims = tokens.mint(ALICE, 60)
    assert tokens.verify(token).identity == ALICE
    body = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert set(body) == {"v", "c", "r", "n", "g", "s", "id", "exp"}
    assert claims.token_id == body["id"] and "k" * 8 not in token


def test_expired_forged_and_foreign_tokens_are_refused() -> None:
    clock = Clock()
    tokens = Tokens(b"k" * 32, "prod", clock)
    token, _ = tokens.mint(ALICE, 60)
    clock.now += 61
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token)
    clock.now -= 61
    body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["r"] = "operator"
    claims["n"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(f"{forged}.{signature}")
    with pytest.raises(TokenError, match="signature"):
        Tokens(b"x" * 32, "prod", clock).verify(token)  # another cluster's key
    with pytest.raises(TokenError, match="not a login"):
        Tokens(b"k" * 32, "staging", clock).verify(token)
    for junk in ("", "a.b.c", "x" * 5000, "nodot"):
        with pytest.raises(TokenError):
            tokens.verify(junk)


def test_only_people_and_the_loopback_caller_log_in_for_a_bounded_time() -> None:
    assert refusal(ALICE) is None and refusal(LOCAL) is None
    assert refusal(Identity("viewer", "vic")) is None
    for role in ("agent", "controller", "insecure"):
        assert "may not log in" in (refusal(Identity(role, "web-1")) or "")
    tokens = Tokens(b"k" * 32, "prod")
    with pytest.raises(TokenError, match="12h"):
        tokens.mint(ALICE, MAX_TTL + 1)
    with pytest.raises(TokenError):
        tokens.mint(ALICE, -1)
    assert tokens.mint(ALICE, 0)[1].expires_at > 0  # 0: the default


def test_the_listener_follows_the_controllers_plaintext_rules() -> None:
    from fleetvisor.agent.security.guard import Mode
    from fleetvisor.controller.dashboard.face import DashboardConfigError, DashboardSettings

    assert DashboardSettings("127.0.0.1:7443").mode(tls=False) is Mode.LOCAL
    assert DashboardSettings("0.0.0.0:7443").mode(tls=True) is Mode.TLS
    assert DashboardSettings("0.0.0.0:7443", insecure=True).mode(tls=False) is Mode.INSECURE
    with pytest.raises(DashboardConfigError, match="--http-insecure"):
        DashboardSettings("0.0.0.0:7443").mode(tls=False)
    with pytest.raises(DashboardConfigError, match="HOST:PORT"):
        DashboardSettings("7443").mode(tls=True)


def test_a_new_key_refuses_old_tokens_and_no_key_refuses_all() -> None:
    tokens = Tokens(b"k" * 32, "prod")
    old, _ = tokens.mint(ALICE, 60)
    first = tokens.key_id
    tokens.use(parse_key((b"n" * 32).hex().encode()))
    assert tokens.key_id != first and first not in repr(b"k" * 32)
    with pytest.raises(TokenError, match="signature"):
        tokens.verify(old)
    new, _ = tokens.mint(ALICE, 60)
    assert tokens.verify(new).identity == ALICE
    tokens.use(parse_key(b"not hex"))  # a key deleted or spoiled in etcd: fail closed
    for token in (old, new):
        with pytest.raises(TokenError, match="no dashboard token key"):
            tokens.verify(token)
    with pytest.raises(TokenError, match="no dashboard token key"):
        tokens.mint(ALICE, 60)
    assert parse_key((b"s" * 16).hex().encode()) is None  # too short to be a key
