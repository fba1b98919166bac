"""A request to re-exec: checked whole before anything changes, then the core hands over.

Every face (XML-RPC `fleetvisor.reexec`, gRPC `Reexec`) comes here through the operations.
A refusal is one main-log line and one fault; the agent goes on exactly as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ..caller import Caller
from ..config.errors import ConfigError
from ..config.model import Config
from ..faults import Fault, FaultError
from ..states import SupervisorState
from ..supervisor import Supervisor, diff_groups
from .children import unsupported
from .handoff import ProbeFailed, probe


@dataclass(frozen=True)
class Plan:
    command: list[str]  # what to exec: the agent's own command unless --reexec-command
    argv: list[str]  # the agent's arguments, passed on unchanged
    load_config: Callable[[], Config]  # parses the config file as the new agent will


class Reexec:
    def __init__(self, core: Supervisor, plan: Plan) -> None:
        self.core = core
        self.plan = plan
        self._busy = False

    async def request(self, caller: Caller, *, dry_run: bool = False) -> str:
        """Check that the new agent can take over, then start the handover (the answer to the
        caller goes out before the exec); with `dry_run`, only check. Returns the agent version
        the new agent named in its dry run ("" if it did not say). Raises FaultError."""
        if self._busy or self.core.handing_over:
            raise FaultError(Fault.FAILED, "a re-exec is already under way")
        self._busy = True
        try:
            version = await self._check()
        finally:
            self._busy = False
        if self.core.mood != SupervisorState.RUNNING:  # a shutdown began during the checks
            raise FaultError(Fault.SHUTDOWN_STATE)
        if dry_run:
            return version
        who = f" (asked over {caller.kind}{' by ' + caller.name if caller.name else ''})"
        self.core.log.info(f"re-exec: handing {sum(1 for p in self.core.all_processes() if p.pid)} running "
                           f"processes over to {' '.join(self.plan.command)}{who}")
        self.core.begin_handover()
        return version

    async def _check(self) -> str:
        why = unsupported(self.core)
        if why is not None:
            self._refuse(why)
        try:
            config = await asyncio.to_thread(self.plan.load_config)
        except ConfigError as exc:
            self._refuse(f"the config file is not valid: {exc}")
        added, changed, removed = diff_groups(config.groups, [g.config for g in self.core.groups.values()])
        if added or changed or removed:
            names = ", ".join(added + changed + removed)
            self._refuse(f"the config file differs from the running config (groups {names}); "
                         "apply it first (supervisorctl update)")
        try:
            return await asyncio.to_thread(probe, self.plan.command, self.plan.argv)
        except ProbeFailed as exc:
            self._refuse(str(exc))

    def _refuse(self, why: str) -> NoReturn:
        self.core.log.error(f"re-exec refused: {why}")
        raise FaultError(Fault.FAILED, f"re-exec refused: {why}")
