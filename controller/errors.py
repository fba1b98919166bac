"""What can go wrong with a controller request, as the core says it.

The core raises these; `service.py` alone turns them into gRPC status codes. Each message is
one line for the operator.
"""

from __future__ import annotations


class ControllerError(Exception):
    """A request the controller cannot carry out; the message says why."""


class NotFound(ControllerError):
    """An unknown node, process, config, revision or operation."""


class InvalidArgument(ControllerError):
    """A request that cannot be right as given: a config that does not parse, a selector that
    means no node, a plan that cannot be made, an operation not in the state the call needs."""


class FailedPrecondition(ControllerError):
    """A request the fleet's current state refuses until that state changes: forgetting a node
    that is still up, adding a policy past the limit."""


class Conflict(ControllerError):
    """Someone else changed what the request was about at the same time, or a running rollout
    holds it; trying again (after it ends) may succeed."""


class NotLeader(ControllerError):
    """A write reached a controller that does not (or no longer) lead."""


class Unavailable(ControllerError):
    """etcd cannot be reached, or a stored record cannot be read by this controller."""


class CorruptRecord(Unavailable):
    """A value in etcd that is not the record its key holds; the message names the key."""


class PermissionDenied(ControllerError):
    """The caller's policies do not cover what the request would touch; nothing was done."""
