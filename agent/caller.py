"""Who asks the core for something: every face passes one with each call.

It decides nothing yet; identities and permissions will attach here, in one place, rather
than in each face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CallerKind = Literal["local", "xmlrpc", "grpc", "web", "logtail"]


@dataclass(frozen=True)
class Caller:
    kind: CallerKind
    name: str = ""  # the peer or user as the face knows it; "" when it knows none


LOCAL = Caller("local")  # the agent itself (boot, fleet config updates, heartbeats)
