"""Scope checks of controller requests: may the caller touch every node, process and run_as
user the request would? The guard has already checked that the caller has the verb somewhere;
these run in the handlers, before any work, and refuse the whole request (PermissionDenied,
with policy.denial's line) or, for reads, leave out what the caller may not see.

Pure: the Authorizer comes from the gate (replaced as policies change), the targets from the
caller. Built-in grants (admins, controllers, local callers) cover everything, so the common
case is one cached lookup.
"""

from __future__ import annotations

import pwd
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from fleetvisor.agent.security.identity import Identity
from fleetvisor.agent.security.policy import CONTROL, DEPLOY, HEARTBEAT, READ, ROOT, Authorizer, denial

from .errors import PermissionDenied
from .processes import ProcessView
from .records import MemberRecord, Selector

T = TypeVar("T")
Program = tuple[str, str, "str | None"]  # (group, process name, user= or None)


class Checks:
    def __init__(self, authorizer: Callable[[], Authorizer]) -> None:
        self._authorizer = authorizer  # read per call: the gate's is replaced when policies change

    @property
    def authorizer(self) -> Authorizer:
        return self._authorizer()

    # -- agents ----------------------------------------------------------------------------------

    def heartbeat(self, who: Identity, node: str) -> None:
        if not self.authorizer.allows(who, HEARTBEAT, node=node):
            mine = f"; its certificate is for node {who.name}" if who.role == "agent" else ""
            raise PermissionDenied(f"{who} may not heartbeat for node {node}{mine}")

    # -- control and reads of one node -----------------------------------------------------------

    def control(self, who: Identity, picked: Sequence[tuple[MemberRecord, Sequence[ProcessView]]]) -> None:
        """Every (node, process) a fleet command would reach; a node with no process data yet is
        checked at node level only if the caller's grants cover every program there."""
        authz = self.authorizer
        if authz.everywhere(who, CONTROL):
            return
        for member, procs in picked:
            if not procs and not authz.allows(who, CONTROL, node=member.name, labels=member.labels,
                                              program=("*", "*")):
                raise PermissionDenied(denial(who, CONTROL, f"on node {member.name}"))
            for proc in procs:
                if not authz.allows(who, CONTROL, node=member.name, labels=member.labels,
                                    program=(proc.group, proc.name)):
                    raise PermissionDenied(denial(who, CONTROL, f"{member.name}:{proc.namespec}"))

    def read_process(self, who: Identity, member: MemberRecord, namespec: str) -> None:
        group, _, name = namespec.partition(":")
        if not self.authorizer.allows(who, READ, node=member.name, labels=member.labels,
                                      program=(group, name or group)):
            raise PermissionDenied(denial(who, READ, f"{member.name}:{namespec}"))

    # -- deploy ----------------------------------------------------------------------------------

    def deploy(self, who: Identity, selector: Selector, programs: Iterable[Program]) -> None:
        """A config for `selector`: some grant must cover the selector, each program and the user
        it runs as (ROOT without user=)."""
        grants = [g for g in self.authorizer.scopes(who, DEPLOY)
                  if g.scope.covers_selector(selector.labels, selector.nodes)]
        where = _where(selector)
        if not grants:
            raise PermissionDenied(denial(who, DEPLOY, f"to {where}"))
        for group, name, user in programs:
            run_as = run_as_name(user)
            if not any(g.scope.covers_program(group, name) and g.may_run_as(run_as) for g in grants):
                raise PermissionDenied(denial(who, DEPLOY, f"{group}:{name} as user {run_as} to {where}"))

    def deploy_group(self, who: Identity, selector: Selector, group: str) -> None:
        """An operation on `group` (every group when empty) of the selector's nodes."""
        wanted = group or "*"
        if not any(g.scope.covers_selector(selector.labels, selector.nodes) and g.scope.covers_program(wanted, "*")
                   for g in self.authorizer.scopes(who, DEPLOY)):
            what = f"group {group}" if group else "every group"
            raise PermissionDenied(denial(who, DEPLOY, f"on {what} of {_where(selector)}"))

    def whole_nodes(self, who: Identity, members: Iterable[MemberRecord]) -> None:
        """Deploy on every program of each node: what the agent's own Reexec asks for
        (Access.on_whole_node), since the agent's code changes under all of them."""
        for member in members:
            if not any(g.scope.covers_node(member.name, member.labels) and g.scope.programs in ("", "*")
                       for g in self.authorizer.scopes(who, DEPLOY)):
                raise PermissionDenied(denial(who, DEPLOY, f"the whole node {member.name}"))

    # -- reads -----------------------------------------------------------------------------------

    def sees_all(self, who: Identity) -> bool:
        return self.authorizer.everywhere(who, READ)

    def sees_node(self, who: Identity, name: str, labels: Mapping[str, str]) -> bool:
        return self.authorizer.allows(who, READ, node=name, labels=labels)

    def sees_config(self, who: Identity, selector: Selector, members: Mapping[str, MemberRecord]) -> bool:
        """A config is readable where it goes: a read grant that covers its selector, or one of
        the nodes it goes to now."""
        if self.sees_all(who):
            return True
        grants = self.authorizer.scopes(who, READ)
        if any(g.scope.covers_selector(selector.labels, selector.nodes) for g in grants):
            return True
        return any(g.scope.covers_node(m.name, m.labels) for m in members.values() if selector.matches(m)
                   for g in grants)

    def read_config(self, who: Identity, name: str, selector: Selector | None,
                    members: Mapping[str, MemberRecord]) -> None:
        """Refused when the config is out of the caller's scope (or unknown, to a scoped caller:
        which configs exist outside its scope is not its business either)."""
        if self.sees_all(who) or (selector is not None and self.sees_config(who, selector, members)):
            return
        raise PermissionDenied(denial(who, READ, f"config {name}"))

    def sees_operation(self, who: Identity, group: str, nodes: Sequence[str],
                       members: Mapping[str, MemberRecord]) -> bool:
        """An operation is readable by whoever may read its group (every group for a rollout) on
        one of its nodes."""
        if self.sees_all(who):
            return True
        program = (group or "*", "*")
        authz = self.authorizer
        return any(authz.allows(who, READ, node=n, labels=members[n].labels, program=program)
                   for n in nodes if n in members)

    def read_operation(self, who: Identity, op_id: str, group: str, nodes: Sequence[str],
                       members: Mapping[str, MemberRecord]) -> None:
        if not self.sees_operation(who, group, nodes, members):
            raise PermissionDenied(denial(who, READ, f"operation {op_id}"))

    def read_audit(self, who: Identity) -> None:
        """The audit log tells about every node and config: read everywhere only."""
        if not self.sees_all(who):
            raise PermissionDenied(denial(who, READ, "the audit log (it needs read everywhere)"))

    def visible(self, who: Identity, name: str, labels: Mapping[str, str], procs: Sequence[T],
                program: Callable[[T], tuple[str, str]]) -> list[T]:
        authz = self.authorizer
        return [p for p in procs if authz.allows(who, READ, node=name, labels=labels, program=program(p))]


def run_as_name(user: str | None) -> str:
    """What a program runs as, by name: ROOT without user=, a uid as its user's name."""
    if not user:
        return ROOT
    if user.isdigit():
        try:
            return pwd.getpwuid(int(user)).pw_name
        except KeyError:
            return user
    return user


def _where(selector: Selector) -> str:
    parts = [",".join(f"{k}={v}" for k, v in sorted(selector.labels.items()))] if selector.labels else []
    if selector.nodes:
        parts.append("nodes " + ",".join(selector.nodes))
    return " ".join(parts) or "its current nodes"
