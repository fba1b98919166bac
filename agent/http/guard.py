"""Bounds on the HTTP face's connections: header, body and idle timeouts, a cap per client.

aiohttp closes a connection that sends nothing, but one that sends half a request line and
stops is kept for ever, and nothing limits how many one client opens; an unauthenticated
peer could hold thousands of descriptors. The guard sits between the listening socket and
aiohttp's protocol, so it sees a connection before any request exists:

- a connection over the per-address cap is closed at once (unix-socket peers have no
  address and are already limited by the socket's file permissions);
- outside a request, a connection is closed after `idle` seconds, or `header` seconds once
  it has started to send a request whose headers are not complete yet;
- a request's body must arrive within `body` seconds (the /RPC2 handler enforces it).

The values are [fleetvisor] options (config/model.py HttpLimits): stock supervisord ignores
that section, so one file serves both.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config.model import HttpLimits


@dataclass
class _Connection:
    address: str | None
    active: int = 0
    served: int = 0  # requests answered on it
    receiving: bool = False
    deadline: float = 0.0
    timer: asyncio.TimerHandle | None = None


@dataclass
class Guard:
    """The connections of one HTTP server, keyed by their transport."""

    limits: HttpLimits
    connections: dict[Any, _Connection] = field(default_factory=dict)
    per_address: Counter[str] = field(default_factory=Counter)
    settling: asyncio.Event | None = None  # set once `settled()` (see HttpFace.drain)

    def protocol_factory(self, make_handler: Callable[[], asyncio.Protocol]
                         ) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, make_handler())

    # -- called by the protocol ---------------------------------------------------------------

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if address is not None and self.per_address[address] >= self.limits.max_connections_per_client:
            return False
        if address is not None:
            self.per_address[address] += 1
        conn = _Connection(address)
        self.connections[transport] = conn
        self._arm(transport, conn, self.limits.idle_timeout)
        return True

    def received(self, transport: asyncio.BaseTransport) -> None:
        conn = self.connections.get(transport)
        if conn is None or conn.active or conn.receiving:
            return
        conn.receiving = True  # a request has begun: its headers get `header` seconds
        loop = asyncio.get_running_loop()
        if conn.deadline - loop.time() > self.limits.header_timeout:
            self._arm(transport, conn, self.limits.header_timeout)

    def forget(self, transport: asyncio.BaseTransport) -> None:
        conn = self.connections.pop(transport, None)
        if conn is None:
            return
        if conn.timer is not None:
            conn.timer.cancel()
        if conn.address is not None:
            self.per_address[conn.address] -= 1
            if self.per_address[conn.address] <= 0:
                del self.per_address[conn.address]
        self._check_settled()

    # -- called around each request (see `server.guard_middleware`) ---------------------------

    def request_started(self, transport: Any) -> None:
        conn = self.connections.get(transport)
        if conn is None:
            return
        conn.active += 1
        conn.receiving = False
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def request_ended(self, transport: Any) -> None:
        conn = self.connections.get(transport)
        if conn is None:
            return
        conn.active = max(0, conn.active - 1)
        conn.served += 1
        if not conn.active:
            self._arm(transport, conn, self.limits.idle_timeout)
        self._check_settled()

    def settled(self) -> bool:
        """No connection is in a request, or was accepted and has not sent its first one yet."""
        return all(c.served and not c.active and not c.receiving for c in self.connections.values())

    def _check_settled(self) -> None:
        if self.settling is not None and self.settled():
            self.settling.set()

    # -- the timer ----------------------------------------------------------------------------

    def _arm(self, transport: asyncio.BaseTransport, conn: _Connection, seconds: float) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        loop = asyncio.get_running_loop()
        conn.deadline = loop.time() + seconds
        conn.timer = loop.call_at(conn.deadline, self._expire, transport)

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        conn = self.connections.get(transport)
        if conn is None:
            return
        conn.timer = None
        if not conn.active:
            transport.close()


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard told of what happens to it."""

    def __init__(self, guard: Guard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(transport):
            transport.close()  # over the cap: aiohttp never sees it
            return
        self._transport = transport
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._guard.received(self._transport)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._transport is None:
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._guard.forget(self._transport)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._inner.resume_writing()
