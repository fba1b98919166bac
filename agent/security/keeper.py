"""The fleet's policies and revoked serials as this agent last heard them from a controller,
kept in the state dir so that they hold while no controller answers: a revoked certificate
stays refused and a scoped operator keeps exactly their rights across an agent restart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from .guard import Gate
from .policy import Authorizer, PolicyError, PolicySet

FILE = "security.json"


class Keeper:
    """Owns the gate's `authorizer` and `revoked`. `warn` gets one line per problem."""

    def __init__(self, gate: Gate, state_dir: str, warn: Callable[[str], None]) -> None:
        self.gate = gate
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, FILE)
        self.warn = warn
        self.state = PolicySet()

    @property
    def revision(self) -> int:
        return self.state.revision

    def load(self) -> None:
        """At startup, before serving: what was kept, or the built-in grants only."""
        try:
            with open(self.path, "rb") as f:
                state = PolicySet.from_json(f.read())
        except FileNotFoundError:
            return
        except (OSError, PolicyError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            self.warn(f"ignoring {self.path}: {reason}; only built-in grants apply until a controller answers")
            return
        self._use(state)

    def accept(self, state: PolicySet) -> None:
        """A controller's answer: in force at once, and kept. A failed write is said and the
        state stays in force (in memory) anyway."""
        self._use(state)
        try:
            self._save(state)
        except OSError as exc:
            self.warn(f"cannot keep the fleet's policies in {self.path}: {exc.strerror or exc}")

    def _use(self, state: PolicySet) -> None:
        self.state = state
        self.gate.authorizer = Authorizer(state.policies)
        self.gate.revoke(dict(state.revoked))

    def _save(self, state: PolicySet) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".security-", dir=self.state_dir)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(state.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
