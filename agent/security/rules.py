"""The verb each RPC needs. An RPC missing here is refused by the guard, and a test fails
for every RPC of a service descriptor that has no entry."""

from __future__ import annotations

from .policy import ADMIN, CONTROL, DEPLOY, HEARTBEAT, PEER, READ

AGENT_SERVICE = "fleetvisor.v1.AgentService"
CONTROLLER_SERVICE = "fleetvisor.v1.ControllerService"
PEER_SERVICE = "fleetvisor.v1.PeerService"

AGENT_RULES: dict[str, str] = {
    "GetInfo": READ,
    "ListProcesses": READ,
    "WatchEvents": READ,
    "TailLog": READ,
    "GetConfig": READ,
    "Start": CONTROL,
    "Stop": CONTROL,
    "Restart": CONTROL,
    "Signal": CONTROL,
    "ApplyConfig": DEPLOY,
    "Reexec": DEPLOY,  # a node-wide deploy (Access.on_whole_node): the agent's own code
}

CONTROLLER_RULES: dict[str, str] = {
    "Heartbeat": HEARTBEAT,
    "GetStatus": READ,
    "WatchStatus": READ,
    "ListNodes": READ,
    "GetLeader": READ,
    "ListConfigs": READ,
    "ConfigHistory": READ,
    "GetConfigRevision": READ,
    "ConfigStatus": READ,
    "TailLog": READ,
    "ListAudit": READ,
    "ListOperations": READ,
    "GetOperation": READ,
    "WatchOperation": READ,
    "Control": CONTROL,
    "PushConfig": DEPLOY,
    "RollbackConfig": DEPLOY,
    "DeleteConfig": DEPLOY,
    "StartOperation": DEPLOY,
    "PauseOperation": DEPLOY,
    "ResumeOperation": DEPLOY,
    "AbortOperation": DEPLOY,
    "AdoptNode": DEPLOY,
    "PinNode": DEPLOY,
    "UnpinNode": DEPLOY,
    "MintDashboardToken": READ,  # a login for what the caller may already read; the servicer refuses machines
    "RotateDashboardKey": ADMIN,
    "ListPolicies": ADMIN,
    "SetPolicy": ADMIN,
    "DeletePolicy": ADMIN,
    "ForgetNode": ADMIN,
    "RevokeCertificate": ADMIN,
    "ListRevocations": ADMIN,
}

# Between controllers (controller/peerservice.py): served to controller certificates only.
PEER_RULES: dict[str, str] = {
    "FollowLive": PEER,
}

# The standard services (grpcapi/standard.py): reading what a server serves and how it is.
STANDARD_RULES: dict[str, dict[str, str]] = {
    "grpc.health.v1.Health": {"Check": READ, "Watch": READ, "List": READ},
    "grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo": READ},
}

RULES: dict[str, dict[str, str]] = {AGENT_SERVICE: AGENT_RULES, CONTROLLER_SERVICE: CONTROLLER_RULES,
                                    PEER_SERVICE: PEER_RULES, **STANDARD_RULES}


def verb_for(full_method: str) -> str | None:
    """'/fleetvisor.v1.AgentService/Start' -> 'control'; None when no rule exists."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return RULES.get(service, {}).get(method)
