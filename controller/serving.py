"""What the controller tells standard gRPC health checkers (grpcapi/standard.py).

Two names, so that a load balancer can pick what it needs:
- "" and "fleetvisor.v1.ControllerService": SERVING while this controller follows etcd, so
  that its reads (status, history, operations) are current; any controller, leader or not.
- "fleetvisor.v1.Leader": SERVING only on the leader while it follows etcd: where writes go.

Both change as soon as etcd's watch drops or returns and as soon as the leadership moves
(callbacks, not polling); a controller shutting down says NOT_SERVING first.
"""

from __future__ import annotations

from fleetvisor.agent.grpcapi.standard import NOT_SERVING, SERVING, Health
from fleetvisor.agent.security.rules import CONTROLLER_SERVICE

from .election import Election
from .mirror import Mirror

LEADER_SERVICE = "fleetvisor.v1.Leader"


def report_serving(health: Health, mirror: Mirror, election: Election) -> None:
    def report(*_: object) -> None:
        reads = SERVING if mirror.connected else NOT_SERVING
        leads = SERVING if mirror.connected and election.is_leader else NOT_SERVING
        health.report({"": reads, CONTROLLER_SERVICE: reads, LEADER_SERVICE: leads})
    mirror.on_connection.append(report)
    election.on_change(report)
    report()
