"""Level-triggered config reconciliation, run by the leader only.

Each pass compares every reachable node's desired revision with the one it runs and pushes
ApplyConfig where they differ. A pass runs when anything changes (a push, a node coming back,
an agent restart) and when a retry falls due; failed pushes back off per node (1 s doubling
to 60 s). Nothing is remembered between passes except the backoff, so a missed push, a lost
answer or a restarted agent all heal on the next pass.

Not every difference is pushed (nodepolicy.py has the rules): nothing goes to a pinned node,
nothing to a foreign one (another cluster's, or running configs this store does not know) until
it is adopted, and a node adopted with --keep is held until its desired revision changes. A
revision applied per node with --force (drift) is reverted, with a log line saying how to pin.
A node's foreign reason and drift are logged and audited once per change.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aetcd

from . import perconfig
from .configs import Desired
from .fleet import Fleet
from .nodepolicy import NO_CONFIG, Action, decide
from .processes import AgentCallFailed
from .records import MemberRecord, OverrideRecord, ReconcileRecord

log = logging.getLogger("fleetvisor.controller")

RETRY_FIRST = 1.0
RETRY_CAP = 60.0
SAFETY_PASS = 30.0  # a pass at least this often, in case a change notification was missed
# and at most this often: a pass reads every node, and a big fleet changes all the time (process
# flaps, nodes coming and going; heartbeats were changes too until they stopped writing to etcd).
# Unbounded, 1000 simulated nodes made about 60 passes a second, most of the controller's CPU;
# bounded, a push waits at most this much longer.
PASS_GAP = 0.1
PASS_SHARE = 4
# Pushes in flight at once (--push-concurrency). An agent takes 50-200 ms to apply a revision, so
# at 32 a 5000-node push took about 20 s; each push in flight is one gRPC call and a little memory.
PUSH_CONCURRENCY = 128
MAX_PUSH_CONCURRENCY = 1024


class Reconciler:
    def __init__(self, fleet: Fleet, *, concurrency: int = PUSH_CONCURRENCY, apply_timeout: float = 30.0) -> None:
        self.fleet = fleet
        self.apply_timeout = apply_timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._noting: dict[str, asyncio.Task[None]] = {}
        self._pushed = 0  # pushes finished: one can make another pass worth it
        self.passes = 0  # for /metrics
        # pushes per (node, failed), for /metrics: plain ints, formatted only when scraped
        self.pushes: dict[tuple[str, bool], int] = {}
        fleet.on_change(self._wake.set)

    async def run(self) -> None:
        try:
            seen: tuple[object, ...] = ()
            due = 0.0
            cost = 0.0  # of the last pass
            while True:
                self._wake.clear()
                began = time.monotonic()
                inputs = self._inputs()
                if inputs != seen or began >= due:  # a process flap, say, changes nothing a pass reads
                    seen, due = inputs, began + self._pass()
                    cost = time.monotonic() - began
                try:  # not wait_for: on 3.11 it can swallow the cancel that ends leadership
                    async with asyncio.timeout(max(0.0, due - time.monotonic())):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                # changes meanwhile: one pass; and passes take at most 1/PASS_SHARE of the loop
                # (a pass over 5000 nodes costs ~150 ms, and they change all the time while they connect)
                await asyncio.sleep(max(PASS_GAP, PASS_SHARE * cost) - (time.monotonic() - began))
        finally:
            tasks = [*self._in_flight.values(), *self._noting.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._in_flight.clear()
            self._noting.clear()

    def _inputs(self) -> tuple[object, ...]:
        """What a pass depends on besides the clock: etcd's state (the mirror's revision), the
        pushes finished here, and which nodes this controller reaches."""
        links = self.fleet.links.links
        return (self.fleet.store.mirror.revision, self._pushed, len(links),
                frozenset(name for name, link in links.items() if not link.reachable))

    def _pass(self) -> float:
        """Start a push for every node that needs one; return the seconds until the next retry."""
        self.passes += 1
        now = time.monotonic()
        configs = self.fleet.configs
        current = configs.current_configs()
        next_due = SAFETY_PASS
        for name, member in self.fleet.membership.members().items():
            link = self.fleet.links.get(name)
            if name in self._in_flight or link is None or not link.reachable:
                continue
            desired = configs.desired(member, current)
            overrides = self.fleet.overrides
            override = overrides.record(name)
            facts = overrides.facts(member)
            foreign = overrides.foreign(member, override)
            drift = facts.applied if facts.local else ""
            if (foreign, drift) != (override.noted_foreign, override.noted_drift) and name not in self._noting:
                self._noting[name] = asyncio.create_task(self._note(name, override, foreign, drift))
            action = decide(desired.revision, facts, foreign=foreign, override=override, ours=overrides.cluster_id)
            if action not in (Action.PUSH, Action.REVERT):
                self._failures.pop(name, None)
                self._retry_at.pop(name, None)
                continue
            due = self._retry_at.get(name, 0.0)
            if due > now:
                next_due = min(next_due, due - now)
                continue
            if action is Action.REVERT:
                log.warning("node %s runs per-node revision %s: reverting it to %s (policy: revert; "
                            "`fleetctl nodes pin %s` holds a node at its local state)", name, facts.applied,
                            desired.revision or NO_CONFIG, name)
            self._in_flight[name] = asyncio.create_task(self._push(member, desired))
        return next_due

    def backoff(self) -> dict[str, float]:
        """Seconds until each backed-off node's next push."""
        now = time.monotonic()
        return {name: max(0.0, due - now) for name, due in self._retry_at.items()}

    async def _note(self, name: str, override: OverrideRecord, foreign: str, drift: str) -> None:
        try:
            await self.fleet.overrides.note(name, override, foreign, drift, self.fleet.id)
        except aetcd.exceptions.ClientError as exc:  # the next pass tries again
            log.warning("cannot record the state of node %s: %s", name, exc)
        finally:
            self._noting.pop(name, None)

    async def _push(self, member: MemberRecord, desired: Desired) -> None:
        name = member.name
        revision = desired.revision or NO_CONFIG
        applied, error = "", ""
        refused: dict[str, str] = {}
        try:
            async with self._slots:
                applied, refused = await self._apply(member, desired)
        except AgentCallFailed as exc:
            error = str(exc)
        finally:
            self._in_flight.pop(name, None)
            self._pushed += 1
        if refused:
            error = "; ".join(f"config {config} refused: {why}" for config, why in refused.items())
        failures = self._failures.get(name, 0) + 1 if error else 0
        self.pushes[name, bool(error)] = self.pushes.get((name, bool(error)), 0) + 1
        if applied:
            self.fleet.note_applied(name, applied)
        if error:
            self._failures[name] = failures
            self._retry_at[name] = time.monotonic() + min(RETRY_CAP, RETRY_FIRST * 2 ** (failures - 1))
            ran = f"; it runs {applied} instead" if applied else ""
            log.warning("config %s not applied on %s (attempt %d): %s%s", revision, name, failures, error, ran)
        else:
            self._failures.pop(name, None)
            self._retry_at.pop(name, None)
            log.debug("config %s applied on %s", revision, name)  # a push to thousands: ConfigStatus says it
        try:
            await self.fleet.configs.record_reconcile(name, ReconcileRecord(
                desired=revision, applied=applied, last_error=error, attempts=failures,
                last_attempt=time.time(), refused=refused))
        except aetcd.exceptions.ClientError as exc:  # the outcome is logged anyway; the next pass retries
            log.warning("cannot record the reconcile outcome for %s: %s", name, exc)
        self._wake.set()

    async def _apply(self, member: MemberRecord, desired: Desired) -> tuple[str, dict[str, str]]:
        """Apply `desired` on the node or, when the node refuses it, what it accepts of it
        (perconfig.py). Returns the revision applied and the configs refused; raises
        AgentCallFailed when nothing was applied."""
        link = self.fleet.links.links[member.name]

        async def send(file: Desired, dry_run: bool = False) -> str:
            await link.apply_config(file.revision or NO_CONFIG, file.text, cluster_id=self.fleet.cluster_id,
                                    timeout=self.apply_timeout, dry_run=dry_run)
            return file.revision or NO_CONFIG

        async def trial(file: Desired) -> str:
            try:
                await send(file, dry_run=True)
            except AgentCallFailed as exc:
                if not exc.refused:
                    raise
                return str(exc)
            return ""

        try:
            return await send(desired), {}
        except AgentCallFailed as exc:
            if not exc.refused:
                raise
            running = self.fleet.configs.running_parts(self.fleet.membership.applied(member))
            outcome = await perconfig.accepted(desired, running, trial)
            if outcome is None:
                raise
        accepted, refused = outcome
        return await send(accepted), refused
