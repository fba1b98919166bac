"""Level-triggered config reconciliation, run by the leader only.

Each pass compares every reachable node's desired revision with the one it runs and pushes
ApplyConfig where they differ. A pass runs when anything changes (a push, a node coming back,
an agent restart) and when a retry falls due; failed pushes back off per node (1 s doubling
to 60 s). Nothing is remembered between passes except the backoff, so a missed push, a lost
answer or a restarted agent all heal on the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aetcd

from .configstore import NO_CONFIG, same_revision
from .fleet import Fleet
from .processes import AgentCallFailed
from .records import MemberRecord, ReconcileRecord

log = logging.getLogger("fleetvisor.controller")

RETRY_FIRST = 1.0
RETRY_CAP = 60.0
SAFETY_PASS = 30.0  # a pass at least this often, in case a change notification was missed


class Reconciler:
    def __init__(self, fleet: Fleet, *, concurrency: int = 32, apply_timeout: float = 30.0) -> None:
        self.fleet = fleet
        self.apply_timeout = apply_timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        fleet.on_change(self._wake.set)

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                delay = self._pass()
                try:  # not wait_for: on 3.11 it can swallow the cancel that ends leadership
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
            self._in_flight.clear()

    def _pass(self) -> float:
        """Start a push for every node that needs one; return the seconds until the next retry."""
        now = time.monotonic()
        configs = self.fleet.configs
        current = configs.current_configs()
        next_due = SAFETY_PASS
        for name, member in self.fleet.membership.members().items():
            link = self.fleet.links.get(name)
            if name in self._in_flight or link is None or not link.reachable:
                continue
            desired = configs.desired(member, current)
            if same_revision(desired.revision, self.fleet.membership.applied(member)):
                self._failures.pop(name, None)
                self._retry_at.pop(name, None)
                continue
            due = self._retry_at.get(name, 0.0)
            if due > now:
                next_due = min(next_due, due - now)
                continue
            self._in_flight[name] = asyncio.create_task(self._push(member, desired.revision or NO_CONFIG,
                                                                   desired.text))
        return next_due

    async def _push(self, member: MemberRecord, revision: str, text: str) -> None:
        name = member.name
        link = self.fleet.links.links[name]
        error = ""
        try:
            async with self._slots:
                await link.apply_config(revision, text, timeout=self.apply_timeout)
        except AgentCallFailed as exc:
            error = str(exc)
        finally:
            self._in_flight.pop(name, None)
        failures = self._failures.get(name, 0) + 1 if error else 0
        if error:
            self._failures[name] = failures
            self._retry_at[name] = time.monotonic() + min(RETRY_CAP, RETRY_FIRST * 2 ** (failures - 1))
            log.warning("config %s not applied on %s (attempt %d): %s", revision, name, failures, error)
        else:
            self._failures.pop(name, None)
            self._retry_at.pop(name, None)
            self.fleet.note_applied(name, revision)
            log.info("config %s applied on %s", revision, name)
        try:
            await self.fleet.configs.record_reconcile(name, ReconcileRecord(
                desired=revision, applied="" if error else revision, last_error=error, attempts=failures,
                last_attempt=time.time()))
        except aetcd.exceptions.ClientError as exc:  # the outcome is logged anyway; the next pass retries
            log.warning("cannot record the reconcile outcome for %s: %s", name, exc)
        self._wake.set()
