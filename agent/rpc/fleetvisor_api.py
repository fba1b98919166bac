"""The `fleetvisor.*` XML-RPC namespace: what the agent does beyond supervisord.

Served on every HTTP server next to `supervisor.*`, behind the same basic auth; stock
clients never call it (`supervisorctl` reaches it with `fleetvisor.reexec` through its
generic XML-RPC support only if asked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import operations as ops
from ..caller import Caller

if TYPE_CHECKING:
    from ..supervisor import Supervisor


class FleetvisorNamespace:
    def __init__(self, core: Supervisor, caller: Caller) -> None:
        self.core = core
        self.caller = caller

    async def reexec(self, dry_run: bool = False) -> bool:
        """Replace the agent's own process with the installed agent (an upgrade) without
        stopping any process: pids, pipes, logs and listening sockets carry over. The new
        command is dry-run first; a refusal is a FAILED fault and changes nothing.

        @param boolean dry_run  only check that a re-exec would be carried out
        @return boolean result  true once the handover has begun (or the checks passed)
        """
        await ops.reexec_daemon(self.core, self.caller, dry_run=dry_run)
        return True
