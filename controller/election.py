"""Leader election on one etcd key, so exactly one controller reconciles and runs operations.

The key is created only if absent (a transaction on create_revision == 0) with our identity
as value, attached to a lease we keep alive. Followers watch the key and campaign the moment
it is deleted, whether the leader resigned (revoked its lease) or died (the lease expired).

Safety first: a leader that cannot renew its lease steps down at once, before the lease
can have expired on the server, and only campaigns again once etcd answers. The old lease is
then revoked so the next leader need not wait for it to expire (after an etcd restart etcd
even extends it). While leading, `revision` is the key's create revision: writes that must
only succeed for the current leader compare it in their transaction (a fencing token).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import aetcd
import grpc
from aetcd import rpc

from .backoff import Backoff
from .etcd import CallCutOff, EtcdError, WatchStream, being_cancelled, describe, recover, request_timeout

log = logging.getLogger(__name__)

ChangeCallback = Callable[[bool, "bytes | None"], None]


class LeadershipLost(Exception):
    """Our lease or our key is gone; someone else may lead now."""


class Election:
    """Campaign for `key` with `identity`; `is_leader` and `leader` follow etcd."""

    def __init__(self, client: aetcd.Client, key: str, identity: bytes, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.key = key
        self.identity = identity
        self.ttl = ttl
        self.is_leader = False
        self.leader: bytes | None = None
        self.revision: int | None = None
        self._client = client
        self._key = key.encode()
        self._lease: int | None = None  # the lease our key holds while we lead
        self._stale_leases: set[int] = set()  # ours, not revoked yet because etcd was away
        self._callbacks: list[ChangeCallback] = []
        self._task: asyncio.Task | None = None
        self._first_round: asyncio.Future[None] | None = None
        self._failing = False  # in a streak of failed rounds (for quieter logs)

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call `callback(is_leader, leader)` whenever either changes; returns an unsubscribe."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Campaign once (so `is_leader`/`leader` are known on return), then keep at it."""
        self._first_round = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"election {self.key}")
        try:
            async with asyncio.timeout(request_timeout(self._client) * 2):
                await asyncio.shield(self._first_round)
        except Exception as exc:
            await self.close(resign=True)
            raise EtcdError(f"cannot campaign for {self.key} in etcd: {describe(exc)}") from None

    async def close(self, resign: bool = True) -> None:
        """Stop campaigning. `resign` revokes our lease so another controller leads at once;
        without it the lease is left to expire, as if this process had been killed."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # unlike awaiting it, keeps a cancel of *us* intact
            self._task = None
        if resign:
            leases = self._stale_leases | ({self._lease} if self._lease else set())
            for lease in leases:
                try:
                    async with asyncio.timeout(request_timeout(self._client)):
                        await self._client.revoke_lease(lease)
                except Exception as exc:
                    log.warning("could not resign %s (lease %x): %s", self.key, lease, describe(exc))
            self._stale_leases.clear()
        self._lease = None
        self._set(False, None)

    # -- rounds --------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                try:
                    await self._revoke_stale()
                    await self._round(backoff)
                except asyncio.CancelledError:
                    if being_cancelled():
                        raise
                    raise CallCutOff() from None  # a call's channel was retired: retry on the new one
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._first_round is not None and not self._first_round.done():
                    self._first_round.set_exception(exc)
                    self._first_round.exception()  # start() reports it; don't warn "never retrieved"
                # one warning per outage (a step-down was already logged), details at debug
                quiet = self._failing or isinstance(exc, LeadershipLost)
                log.log(logging.DEBUG if quiet else logging.WARNING, "election on %s: %s; retrying",
                        self.key, describe(exc))
                self._failing = True
                await recover(self._client, exc)
                await asyncio.sleep(backoff.next())

    async def _round(self, backoff: Backoff) -> None:
        """Lead or follow until the key changes hands; raises when etcd fails us."""
        current = await self._client.get(self._key)
        if current is not None:
            self._round_done(backoff)
            self._set(False, current.value)
            await self._watch(current.header.revision + 1, leading=False)
            return
        asked = time.monotonic()  # the lease runs from at most now
        lease = await self._client.lease(max(1, math.ceil(self.ttl)))
        try:
            won, responses = await self._client.transaction(
                compare=[self._client.transactions.create(self._key) == 0],
                success=[self._client.transactions.put(self._key, self.identity, lease=lease.id)],
                failure=[self._client.transactions.get(self._key)])
        except BaseException:
            self._stale_leases.add(lease.id)
            raise
        if not won:
            self._stale_leases.add(lease.id)  # not needed after all
            try:
                await self._revoke_stale()
            except Exception:
                pass  # the next round tries again
            value, holder = responses[0][0] if responses[0] else (None, None)
            self._round_done(backoff)
            self._set(False, value)
            if holder is not None:
                await self._watch(holder.header.revision + 1, leading=False)
            return
        revision = responses[0].response_put.header.revision
        self._lease, self.revision = lease.id, revision
        self._round_done(backoff)
        self._set(True, self.identity)
        log.info("leading %s (lease %x, revision %d)", self.key, lease.id, revision)
        await self._lead(lease.id, min(self.ttl, lease.ttl), asked, revision)

    def _round_done(self, backoff: Backoff) -> None:
        backoff.reset()
        if self._failing:
            self._failing = False
            log.info("election on %s: etcd answers again", self.key)
        if self._first_round is not None and not self._first_round.done():
            self._first_round.set_result(None)

    async def _lead(self, lease: int, ttl: float, asked: float, revision: int) -> None:
        """Renew the lease and watch our key; step down when either fails."""
        tasks = [asyncio.create_task(self._keepalive(lease, ttl, asked)),
                 asyncio.create_task(self._watch(revision + 1, leading=True))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Step down before anything else can happen on the loop.
        self._lease, self.revision = None, None
        self._stale_leases.add(lease)
        self._set(False, None)
        # a subtask whose call was cut off by a retired channel ends cancelled, not failed
        errors = [CallCutOff() if t.cancelled() else t.exception() for t in done]
        error = next((e for e in errors if e is not None), None)
        log.warning("stepped down from %s: %s", self.key,
                    describe(error) if error else "the key changed hands")
        if error is not None:
            raise LeadershipLost(describe(error)) from error

    async def _keepalive(self, lease: int, ttl: float, valid_from: float) -> None:
        """Renew every third of the TTL. The lease holds for `ttl` from the last renewal sent
        (`valid_from`, monotonic; at first, when the grant was asked for), so a renewal may take
        until half an interval before that: a leader whose loop is busy (a push to thousands of
        nodes) keeps leading while its lease is good, not only for one interval. It steps down
        before the lease could expire on the server, and its writes are fenced on the lease."""
        interval = ttl / 3
        call = self._client.leasestub.LeaseKeepAlive(metadata=self._client.metadata)
        try:
            while True:
                sent = time.monotonic()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the reply arrives, and this loop would outlive close()
                async with asyncio.timeout(max(0.0, valid_from + ttl - interval / 2 - sent)):
                    await call.write(rpc.LeaseKeepAliveRequest(ID=lease))
                    response = await call.read()
                if response is grpc.aio.EOF:
                    raise LeadershipLost("etcd closed the lease keepalive stream")
                if response.TTL <= 0:
                    raise LeadershipLost(f"lease {lease:x} expired")
                valid_from = sent
                await asyncio.sleep(interval)
        except TimeoutError:
            raise LeadershipLost("lease renewal timed out") from None
        finally:
            call.cancel()

    async def _watch(self, start_revision: int, *, leading: bool) -> None:
        """Return when the key is deleted (or, leading, taken over); follow its value."""
        async with WatchStream(self._client, self._key, start_revision=start_revision) as stream:
            async for response in stream:
                for event in response.events:
                    if event.type == rpc.Event.DELETE:
                        return
                    if leading and (event.kv.lease != self._lease or event.kv.value != self.identity):
                        return
                    if not leading:
                        self._set(False, event.kv.value)
        raise EtcdError("etcd ended the watch")

    async def _revoke_stale(self) -> None:
        """Revoke leases we no longer use, so our old key does not block the next leader."""
        for lease in list(self._stale_leases):
            try:
                await self._client.revoke_lease(lease)
            except Exception as exc:
                if "not found" not in describe(exc):
                    raise
            self._stale_leases.discard(lease)

    def _set(self, is_leader: bool, leader: bytes | None) -> None:
        if (is_leader, leader) == (self.is_leader, self.leader):
            return
        self.is_leader, self.leader = is_leader, leader
        for callback in list(self._callbacks):
            try:
                callback(is_leader, leader)
            except Exception as exc:
                log.error("election callback %r failed: %s", callback, describe(exc),
                          exc_info=log.isEnabledFor(logging.DEBUG))
