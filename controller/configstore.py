"""The fleet's configs in etcd: pushing and rolling back revisions, what each node should run,
and the leader's record of what it pushed to each node."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from . import audit, configs, opmodel, planning, records
from .configs import Current, Desired
from .errors import Conflict, InvalidArgument, NotFound, Unavailable
from .membership import Membership
from .records import (
    AssignmentRecord,
    MemberRecord,
    ReconcileRecord,
    RevisionRecord,
    Rollout,
    Selector,
    decode,
    encode,
)
from .store import Put, Store

log = logging.getLogger("fleetvisor.controller")

# Plans a rollout: (target nodes, new revision, previous revision) -> the operation to store
RolloutPlanner = Callable[[list[str], int, int], opmodel.Operation]

# A new assignment from the current one and its rollout (configstore's rollout updates)
RolloutChange = Callable[[AssignmentRecord, Rollout], AssignmentRecord]


@dataclass(frozen=True)
class PushResult:
    revision: int  # the stored revision, or the current one when unchanged
    targets: list[str]  # the nodes it goes to
    unchanged: bool  # the text and assignment equal the current revision: nothing stored
    operation_id: str = ""  # the rollout operation, for a rolling push
    plan: opmodel.Operation | None = None  # a dry run's rollout operation, not stored


@dataclass(frozen=True)
class History:
    revisions: dict[int, RevisionRecord]
    current: int  # 0 when its first rollout was withdrawn, or the config was deleted
    withdrawn: dict[int, str]  # the revisions whose rollout failed or was aborted, with why


class ConfigStore:
    def __init__(self, store: Store, membership: Membership) -> None:
        self.store = store
        self.membership = membership
        self._reconciles = records.Decoded(ReconcileRecord)
        self._current: tuple[tuple[int, ...], dict[str, Current]] = ((), {})  # see current_configs

    # -- reading ---------------------------------------------------------------------------------

    def generation(self) -> tuple[int, ...]:
        """Stays the same while no config, revision or assignment changes."""
        return self.store.mirror.generation(records.ASSIGNMENTS, records.CONFIGS)

    def current_configs(self) -> dict[str, Current]:
        """Each config's current revision; one dict (read only) until a config or assignment changes."""
        generation = self.generation()
        if self._current[0] != generation:
            self._current = generation, configs.current_configs({**self.store.items(records.ASSIGNMENTS),
                                                                 **self.store.items(records.CONFIGS)})
        return self._current[1]

    def desired(self, member: MemberRecord, current: dict[str, Current] | None = None) -> Desired:
        return configs.desired_for(member, (self.current_configs() if current is None else current).values())

    def history(self, name: str) -> History:
        revisions = configs.revisions_of(self.store.items(records.revisions_prefix(name)), name)
        current = self.assignment(name)
        if not revisions or current is None:
            raise NotFound(f"no such config: {name}")
        return History(revisions, current.revision, {int(k): v for k, v in current.withdrawn.items()})

    def revision(self, name: str, number: int) -> tuple[int, RevisionRecord, History]:
        """Revision `number` of config `name` (0: its current one, else its newest), and its history."""
        history = self.history(name)
        revisions = history.revisions
        number = number or history.current or max(revisions)
        if number not in revisions:
            raise NotFound(f"config {name} has no revision {number} (revisions 1-{max(revisions)})")
        return number, revisions[number], history

    def running_parts(self, applied: str) -> dict[str, configs.Part | None]:
        """The configs in a node's applied revision id, each as the part it runs (None when that
        revision is no longer stored)."""
        result: dict[str, configs.Part | None] = {}
        for name, number in configs.revision_numbers(applied).items():
            rev = decode(RevisionRecord, self.store.get(records.revision_key(name, number)))
            result[name] = configs.Part(name, number, rev.text) if rev is not None else None
        return result

    def reconcile_record(self, name: str) -> ReconcileRecord:
        key = records.reconcile_key(name)
        return self._reconciles.get(key, self.store.get(key)) or ReconcileRecord()

    # -- writing ---------------------------------------------------------------------------------

    def _check_selector(self, selector: Selector) -> list[str]:
        """The member names a selector means; unknown names or labels nobody has are refused."""
        members = self.membership.members()
        unknown = [n for n in selector.nodes if n not in members]
        if unknown:
            raise InvalidArgument(f"unknown node(s): {', '.join(unknown)} "
                                  f"(known: {', '.join(members) or 'none registered yet'})")
        targets = [n for n, m in members.items() if selector.matches(m)]
        if selector.labels and not any(records.labels_match(m.labels, selector.labels) for m in members.values()):
            wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.labels.items()))
            raise InvalidArgument(f"no node has the label(s) {wanted}")
        return targets

    async def push(self, name: str, text: str, selector: Selector, message: str, author: str, *,
                   rollback_of: int = 0, rollout: RolloutPlanner | None = None, dry_run: bool = False) -> PushResult:
        """Store `text` as the next revision of config `name` (or nothing, if it is the current one).
        With `rollout`, the nodes keep the previous revision until the rollout operation it plans
        (stored in the same transaction) reaches them. A `dry_run` checks all the same and stores
        nothing: its result says what would be stored, with the rollout's plan."""
        configs.check_name(name)
        assignment_raw = self.store.get(records.assignment_key(name))
        current = decode(AssignmentRecord, assignment_raw)
        pinned = current.active_rollout() if current is not None else None
        if pinned is not None and self._operation_live(pinned.op):
            raise Conflict(f"a rollout of {name} is in progress (operation {pinned.op}): let it finish "
                           f"or abort it first (fleetctl ops abort {pinned.op})")
        if selector.empty:
            if current is None or current.deleted_by:
                state = "was deleted" if current is not None else "is new"
                raise InvalidArgument(f"config {name} {state}: say where it goes (--nodes or --label)")
            selector = current.target()
        targets = self._check_selector(selector)
        # The agent's parser, off the loop (a big config must not stall the controller), on
        # texts gathered here: the mirror changes on the loop while the thread parses.
        members = self.membership.members()
        local = {node: members[node].local_sections for node in targets}
        await asyncio.to_thread(_validate_all, name, text, self._combinations(name, text, targets), local,
                                configs.local_names(members[node] for node in targets))
        history = configs.revisions_of(self.store.items(records.revisions_prefix(name)), name)
        if current is not None and current.target() == selector and history.get(current.revision) \
                and history[current.revision].text == text and not rollback_of:
            return PushResult(current.revision, targets, True)
        number = max(history, default=0) + 1
        if dry_run:
            plan = rollout(targets, number, self._converged(current, pinned)) if rollout is not None else None
            return PushResult(number, targets, False, plan=plan)
        now = time.time()
        revision = RevisionRecord(text=text, author=author, message=message, created_at=now,
                                  sha256=configs.sha256(text), selector=records.selector_data(selector),
                                  rollback_of=rollback_of)
        pin: dict[str, object] = {}
        puts = [Put(records.revision_key(name, number), encode(revision))]
        op_id = ""
        if rollout is not None:
            # Nodes the new rollout has not reached stay on what every node converged to:
            # never a revision an earlier rollout did not finish.
            previous = self._converged(current, pinned)
            op = rollout(targets, number, previous)
            op_id = op.id
            pin = {"op": op.id, "previous": previous, "done": []}
            puts.append(Put(records.op_key(op.id), opmodel.encode(op)))
        puts.append(Put(records.assignment_key(name), encode(AssignmentRecord(
            number, records.selector_data(selector), now, pin, current.withdrawn if current else {}))))
        expect = {records.revision_key(name, number): None, records.assignment_key(name): assignment_raw}
        if not await self.store.compare_and_put(puts, expect):
            raise Conflict(f"config {name} was changed by someone else at the same time; try again")
        log.info("config %s revision %d stored by %s: %s%s", name, number, author, message,
                 f" (rolled out by operation {op_id})" if op_id else "")
        return PushResult(number, targets, False, op_id)

    def _converged(self, current: AssignmentRecord | None, pinned: Rollout | None) -> int:
        """The revision every node of a config runs or is being sent back to. A rollout that
        ended without saying so (its controller died in between) counts only if it succeeded."""
        if current is None:
            return 0
        if pinned is None or self._operation_state(pinned.op) == opmodel.OpState.SUCCEEDED:
            return current.revision
        return pinned.previous

    def _operation_state(self, op_id: str) -> opmodel.OpState | None:
        key = records.op_key(op_id)
        raw = self.store.get(key)
        try:
            return opmodel.decode(raw, key).state if raw is not None else None
        except Unavailable:
            return None

    def _operation_live(self, op_id: str) -> bool:
        """Whether an operation is running or paused. An aborted or failed rollout leaves its
        nodes where it stopped until the next push, which it no longer holds up."""
        return self._operation_state(op_id) in opmodel.LIVE

    async def update_rollout(self, name: str, op_id: str, change: Callable[[list[str]], list[str] | None]) -> None:
        """Change the set of nodes a rollout has reached (`change` returns the new list, or None to
        end the rollout: every node then runs the new revision). A no-op once the rollout is gone."""
        def changed(assignment: AssignmentRecord, rollout: Rollout) -> AssignmentRecord:
            done = change(list(rollout.done))
            pin = {} if done is None else {**assignment.rollout, "done": sorted(set(done))}
            return replace(assignment, rollout=pin)
        await self._change_rollout(name, op_id, changed)

    async def withdraw_rollout(self, name: str, op_id: str, why: str, controller_id: str) -> None:
        """A rollout failed or was aborted: `name` goes back to the revision every node ran
        before it (the nodes it reached are sent that one again), and the rolled-out revision
        is marked withdrawn; logged and audited. A no-op once the rollout is no longer the
        config's."""
        def withdrawn(assignment: AssignmentRecord, rollout: Rollout) -> AssignmentRecord:
            return replace(assignment, revision=rollout.previous, rollout={},
                           withdrawn={**assignment.withdrawn, str(assignment.revision): why})
        changed = await self._change_rollout(name, op_id, withdrawn)
        if changed is None:
            return
        before, rollout = changed
        text = (f"config {name}: revision {before.revision} withdrawn ({why}); back to "
                + (f"revision {rollout.previous}" if rollout.previous else "no revision")
                + (f", sent again to {', '.join(rollout.done)}" if rollout.done else ""))
        log.warning("%s", text)
        await audit.record(self.store.client, self.store.prefix, audit.entry(
            "controller " + controller_id, "config.withdraw", {"name": name, "revision": before.revision,
                                                               "operation": op_id}, True, text, controller_id))

    async def _change_rollout(self, name: str, op_id: str,
                              change: RolloutChange) -> tuple[AssignmentRecord, Rollout] | None:
        """Store `change` of config `name`'s assignment while rollout `op_id` is its own; the
        assignment and rollout as they were, or None (nothing changed) once the rollout is gone."""
        key = records.assignment_key(name)
        while True:
            raw = self.store.get(key)
            assignment = decode(AssignmentRecord, raw)
            rollout = assignment.active_rollout() if assignment else None
            if assignment is None or rollout is None or rollout.op != op_id:
                return None
            if await self.store.compare_and_put([Put(key, encode(change(assignment, rollout)))], {key: raw}):
                return assignment, rollout

    def _combinations(self, name: str, text: str | None, targets: list[str]) -> list[dict[str, str]]:
        """What to validate: the config (`text`; None: without it) together with every other
        config each target node gets, each combination once (the config alone when no node is
        targeted yet). A depends_on may name a program of any of them."""
        current = self.current_configs()
        members = self.membership.members()
        combinations = {frozenset(c.name for c in current.values()
                                  if c.name != name and c.selector.matches(members[node])) for node in targets}
        mine = {name: text} if text is not None else {}
        return [{**mine, **{o: current[o].text for o in others}} for others in combinations or {frozenset()}]

    def defined_names(self) -> set[str]:
        """The program and group names the current configs define: what a config's depends_on
        may name before its targets are known (the push then checks each target exactly)."""
        return {n for c in self.current_configs().values() for n in planning.groups_of(c.text)}

    def assignment(self, name: str) -> AssignmentRecord | None:
        return decode(AssignmentRecord, self.store.get(records.assignment_key(name)))

    async def delete(self, name: str, author: str) -> tuple[int, list[str]]:
        """Take config `name` off every node it goes to (the reconciler then removes its programs
        there); it is listed no more, and its history stays. Returns the revision it was at and
        those nodes. A later push of the name starts it again (it must say where it goes)."""
        configs.check_name(name)
        key = records.assignment_key(name)
        raw = self.store.get(key)
        current = decode(AssignmentRecord, raw)
        if current is None or current.deleted_by:
            raise NotFound(f"no such config: {name}")
        rollout = current.active_rollout()
        if rollout is not None and self._operation_live(rollout.op):
            raise Conflict(f"a rollout of {name} is in progress (operation {rollout.op}): abort it first "
                           f"(fleetctl ops abort {rollout.op})")
        selector = current.target()
        members = self.membership.members()
        targets = [n for n, m in members.items() if selector.matches(m)]
        try:  # what stays on its nodes must still load without it (a depends_on on its programs)
            await asyncio.to_thread(_validate_all, name, None, self._combinations(name, None, targets), {},
                                    configs.local_names(members[node] for node in targets))
        except InvalidArgument as exc:
            raise InvalidArgument(f"config {name} cannot be deleted: what stays on its nodes needs it: {exc}") from None
        gone = AssignmentRecord(0, {}, time.time(), {}, current.withdrawn, deleted_by=author)
        if not await self.store.compare_and_put([Put(key, encode(gone))], {key: raw}):
            raise Conflict(f"config {name} was changed by someone else at the same time; try again")
        log.info("config %s deleted by %s (it was at revision %d; taken off %s)", name, author, current.revision,
                 ", ".join(targets) or "no node")
        return current.revision, targets

    async def rollback(self, name: str, to: int, message: str, author: str) -> PushResult:
        history = configs.revisions_of(self.store.items(records.revisions_prefix(name)), name)
        if not history:
            raise NotFound(f"no such config: {name}")
        if to not in history:
            raise NotFound(f"config {name} has no revision {to} (revisions 1-{max(history)})")
        return await self.push(name, history[to].text, Selector(), message or f"rollback to revision {to}",
                               author, rollback_of=to)

    async def record_reconcile(self, name: str, record: ReconcileRecord) -> None:
        if record != self.reconcile_record(name):
            await self.store.client.put(self.store.key(records.reconcile_key(name)), encode(record))


def _validate_all(name: str, text: str | None, combinations: list[dict[str, str]], local: dict[str, list[str]],
                  elsewhere: set[str]) -> None:
    """Raises InvalidArgument for the first combination the agent's parser refuses, or when the
    config clashes with a node's own programs (`local`, whose names, `elsewhere`, depends_on
    may use; each node checks its own exactly when it applies)."""
    for named_texts in combinations:
        if named_texts:
            configs.validate(named_texts, elsewhere)
    if text is not None:
        configs.check_local(name, text, local)
