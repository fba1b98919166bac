"""Scope checks of the agent's gRPC face, after the guard's coarse verb check: which processes
of this node a caller may read, control or deploy, and what a pushed config may run as.

Every check refuses a whole call before anything is done; a refusal is PERMISSION_DENIED with
policy.denial()'s line, and one WARN line in the main log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NoReturn

import grpc

from ..config.model import GroupConfig
from ..process import Process
from ..security import guard
from ..security.guard import Gate
from ..security.identity import Identity
from ..security.policy import DEPLOY, READ, ROOT, denial
from ..supervisor import Supervisor


class Access:
    """The node's own name and labels, the gate whose authorizer is current, and where a
    refusal is said. `warn` gets one line per refusal."""

    def __init__(self, gate: Gate, core: Supervisor, node: str, labels: Iterable[tuple[str, str]],
                 warn: Callable[[str], None]) -> None:
        self.gate = gate
        self.core = core
        self.node = node
        self.labels = dict(labels)
        self.warn = warn

    async def on_refusal(self, identity: Identity | None, method: str, message: str) -> None:
        """The guard's hook: a refusal before any handler ran."""
        self.warn(f"gRPC {method} refused for {identity or 'an unidentified caller'}: {message}")

    async def refuse(self, context: grpc.aio.ServicerContext, identity: Identity, verb: str, what: str) -> NoReturn:
        message = denial(identity, verb, what)
        self.warn(f"gRPC refused: {message}")
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
        raise AssertionError("abort raises")

    def _allows(self, identity: Identity, verb: str, group: str, name: str, run_as: str | None = None) -> bool:
        return self.gate.authorizer.allows(identity, verb, node=self.node, labels=self.labels,
                                           program=(group, name), run_as=run_as)

    async def on_node(self, context: grpc.aio.ServicerContext, verb: str) -> Identity:
        """`verb` on this node at all (some process of it, for a program-scoped grant)."""
        identity = guard.current()
        if not any(g.scope.covers_node(self.node, self.labels) for g in self.gate.authorizer.scopes(identity, verb)):
            await self.refuse(context, identity, verb, f"on node {self.node}")
        return identity

    async def on_whole_node(self, context: grpc.aio.ServicerContext, verb: str) -> Identity:
        """`verb` on this node and every program of it (what changes the agent itself)."""
        identity = guard.current()
        if not any(g.scope.covers_node(self.node, self.labels) and g.scope.programs in ("", "*")
                   for g in self.gate.authorizer.scopes(identity, verb)):
            await self.refuse(context, identity, verb, f"the whole node {self.node}")
        return identity

    async def processes(self, context: grpc.aio.ServicerContext, verb: str, procs: Iterable[Process]) -> None:
        """`verb` on every one of `procs`, or the call is refused naming the first that is not."""
        identity = guard.current()
        if self.gate.authorizer.everywhere(identity, verb):
            return
        for proc in procs:
            if not self._allows(identity, verb, proc.group.name, proc.name):
                await self.refuse(context, identity, verb, f"{proc.group.name}:{proc.name} on node {self.node}")

    def readable(self, procs: Iterable[Process]) -> list[Process]:
        """The processes the caller may read; the rest are left out, not refused."""
        return [p for p in procs if self.sees(p.group.name, p.name)]

    def sees(self, group: str, name: str) -> bool:
        identity = guard.current()
        return self.gate.authorizer.everywhere(identity, READ) or self._allows(identity, READ, group, name)

    def sees_group(self, group: str) -> bool:
        """A group event: shown to whoever may read some process of the group as configured
        now; a removed group has none left, and is judged by its name as process name."""
        configs = [g for g in self.core.group_configs if g.name == group]
        names = [p.name for g in configs for p in g.processes] or [group]
        return any(self.sees(group, name) for name in names)

    async def deploy(self, context: grpc.aio.ServicerContext, groups: Iterable[GroupConfig]) -> None:
        """`deploy` on every process of `groups` (what a config adds, changes or removes), each
        with the user it runs as (a program without user= runs as the agent's user: root)."""
        identity = guard.current()
        for group in groups:
            for proc in group.processes:
                user = proc.user or ROOT
                if not self._allows(identity, DEPLOY, group.name, proc.name, run_as=user):
                    await self.refuse(context, identity, DEPLOY,
                                      f"{group.name}:{proc.name} running as {user} on node {self.node}")
