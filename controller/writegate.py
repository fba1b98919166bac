"""Whether this controller may take a write now: the one rule every face applies before any
work (gRPC's ControllerService, the XML-RPC fleet endpoint).

A write needs etcd (to record and audit it) and the leadership (only the leader changes the
fleet, so two controllers never race on it). A follower refuses and says where the leader is.
"""

from __future__ import annotations

from .errors import ControllerError, NotLeader, Unavailable
from .fleet import Fleet
from .leadership import Leadership


def write_refusal(fleet: Fleet, leadership: Leadership) -> ControllerError | None:
    """Why a write cannot be taken here and now; None when it can."""
    fresh = fleet.views.freshness()
    if fresh.etcd_unavailable:
        return Unavailable(f"{fresh.reason}; nothing was changed, try again once etcd is back")
    if not leadership.is_leader:
        return NotLeader("this controller is not the leader" if leadership.leader_address
                         else "no controller leads right now; try again in a few seconds")
    return None
