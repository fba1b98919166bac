"""Policies and revocations to and from the wire (controller.proto), for the controller's
admin RPCs and heartbeat answers and for the agent that keeps what it was sent."""

from __future__ import annotations

from fleetvisor.v1 import controller_pb2 as pb

from .policy import Policy, PolicySet, make


def policy_to_pb(policy: Policy) -> pb.Policy:
    return pb.Policy(name=policy.name, verbs=sorted(policy.verbs), users=sorted(policy.users),
                     groups=sorted(policy.groups), roles=sorted(policy.roles), labels=dict(policy.scope.labels),
                     nodes=policy.scope.nodes, programs=policy.scope.programs, run_as=sorted(policy.run_as))


def policy_from_pb(message: pb.Policy) -> Policy:
    """Raises PolicyError naming what is wrong."""
    return make(message.name, message.verbs, users=message.users, groups=message.groups, roles=message.roles,
                labels=dict(message.labels), nodes=message.nodes or "*", programs=message.programs or "*",
                run_as=message.run_as)


def state_to_pb(state: PolicySet) -> pb.SecurityState:
    return pb.SecurityState(revision=state.revision, policies=[policy_to_pb(p) for p in state.policies],
                            revoked=[pb.Revocation(serial=s, name=n) for s, n in sorted(state.revoked.items())])


def state_from_pb(message: pb.SecurityState) -> PolicySet:
    """Raises PolicyError."""
    return PolicySet(message.revision, [policy_from_pb(p) for p in message.policies],
                     {r.serial: r.name for r in message.revoked})
