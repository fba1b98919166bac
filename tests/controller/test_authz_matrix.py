"""Every RPC of ControllerService and AgentService, called by every kind of identity, against a
real mutual-TLS fleet (etcd, a controller, an agent): each cell is allowed or refused exactly as
the tables in deploy/TLS.md say (they are read from it, so the document cannot drift).

"Allowed" means the guard let the call through: the handler may still answer NOT_FOUND or
INVALID_ARGUMENT, since the requests name things that do not exist so that nothing changes.
The handshake refuses no certificate, another CA's and an expired one before any RPC exists, so
the client sees UNAVAILABLE; a certificate without a role or a revoked one is UNAUTHENTICATED.
"""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fleetvisor.agent.security.identity import san_uris
from fleetvisor.agent.security.policy import CONTROL, READ
from fleetvisor.agent.security.rules import AGENT_RULES, CONTROLLER_RULES, PEER_RULES
from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc
from fleetvisor.v1 import peer_pb2 as ppb
from fleetvisor.v1 import peer_pb2_grpc as ppb_grpc
from tests.support import wait_for

from .fleet_harness import CLUSTER, FLEETCTL
from .test_fleet_tls import ENV, tls_agent, tls_flags

ALLOWED = "allowed"
DENIED = "PERMISSION_DENIED"
UNAUTHENTICATED = "UNAUTHENTICATED"
HANDSHAKE = "UNAVAILABLE"  # refused by TLS before the call exists
REFUSALS = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE}

TLS_MD = Path(__file__).resolve().parents[2] / "deploy" / "TLS.md"
ROLE_COLUMNS = ("agent", "controller", "operator", "viewer")
SCOPED_VERBS = {READ, CONTROL}  # the policy the fixture gives the scoped operator
# Reads the scoped operator is refused all the same: these requests name no config or
# operation in its scope, and the audit log needs read everywhere.
SCOPED_OUT = {"ControllerService.ConfigHistory", "ControllerService.GetConfigRevision",
              "ControllerService.GetOperation", "ControllerService.WatchOperation", "ControllerService.ListAudit"}
# Callers without a usable certificate, as TLS.md's second table names them.
REFUSED = {"no-certificate": "no certificate", "other-ca": "another CA", "expired": "expired",
           "revoked": "revoked", "no-role": "without a role", "other-cluster": "another `--cluster`"}


def documented() -> tuple[dict[str, tuple[str, dict[str, str]]], dict[str, str]]:
    """TLS.md's tables: per RPC (`Service.Method`) its verb and the cell of each role; per kind
    of refused caller, the status the client sees."""
    rpcs: dict[str, tuple[str, dict[str, str]]] = {}
    refusals: dict[str, str] = {}
    for line in TLS_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and "Service." in cells[0]:
            rpcs[cells[0].strip("`")] = (cells[1], dict(zip(ROLE_COLUMNS, cells[2:], strict=True)))
        elif len(cells) == 3:
            for kind, words in REFUSED.items():
                if words in cells[0]:
                    refusals[kind] = cells[2].split()[0]
    return rpcs, refusals


def expected(identity: str, rpc: str, table: dict[str, tuple[str, dict[str, str]]], refusals: dict[str, str]) -> str:
    if identity in REFUSED:
        return refusals[identity]
    verb, cells = table[rpc]
    cell = cells["operator" if identity in ("admin", "scoped") else identity]
    allowed = {"built-in", "own node only"} | ({"admins or policy"} if identity == "admin" else set())
    if identity == "scoped" and cell == "admins or policy":
        return ALLOWED if verb in SCOPED_VERBS and rpc not in SCOPED_OUT else DENIED
    return ALLOWED if cell in allowed else DENIED


def test_tls_md_has_a_row_for_every_rpc_and_every_refusal() -> None:
    table, refusals = documented()
    assert set(table) == {f"ControllerService.{m}" for m in CONTROLLER_RULES} | {
        f"AgentService.{m}" for m in AGENT_RULES} | {f"PeerService.{m}" for m in PEER_RULES}
    assert set(refusals) == set(REFUSED)
    rules = {"ControllerService": CONTROLLER_RULES, "AgentService": AGENT_RULES, "PeerService": PEER_RULES}
    for rpc, (verb, _) in table.items():
        service, method = rpc.split(".")
        assert verb == rules[service][method], rpc


# Requests that pass authorization but change nothing: unknown names, bad input, dry runs.
CONTROLLER_REQUESTS: dict[str, object] = {
    "Heartbeat": pb.HeartbeatRequest(node="web-9", address="127.0.0.1:1", agent_version="matrix"),
    "GetStatus": pb.StatusRequest(),
    "WatchStatus": pb.StatusRequest(),
    "ListNodes": pb.ListNodesRequest(),
    "GetLeader": pb.GetLeaderRequest(),
    "ListConfigs": pb.ListConfigsRequest(),
    "ConfigHistory": pb.ConfigHistoryRequest(name="nosuch"),
    "GetConfigRevision": pb.GetConfigRevisionRequest(name="nosuch"),
    "ConfigStatus": pb.ConfigStatusRequest(),
    "TailLog": pb.FleetTailRequest(node="nosuch", request=apb.TailLogRequest(name="x")),
    "ListAudit": pb.ListAuditRequest(limit=1),
    "ListOperations": pb.ListOperationsRequest(),
    "GetOperation": pb.GetOperationRequest(id="nosuch"),
    "WatchOperation": pb.GetOperationRequest(id="nosuch"),
    "Control": pb.ControlRequest(action=pb.STOP, patterns=["nosuch-node:x"]),
    "PushConfig": pb.PushConfigRequest(name="matrix", config_text="[program:x"),
    "RollbackConfig": pb.RollbackConfigRequest(name="nosuch", to_revision=1),
    "DeleteConfig": pb.DeleteConfigRequest(name="nosuch"),
    "StartOperation": pb.StartOperationRequest(dry_run=True),
    "PauseOperation": pb.GetOperationRequest(id="nosuch"),
    "ResumeOperation": pb.GetOperationRequest(id="nosuch"),
    "AbortOperation": pb.GetOperationRequest(id="nosuch"),
    "AdoptNode": pb.AdoptNodeRequest(node="nosuch"),
    "PinNode": pb.PinNodeRequest(node="nosuch"),
    "UnpinNode": pb.PinNodeRequest(node="nosuch"),
    "MintDashboardToken": pb.DashboardTokenRequest(ttl_seconds=-1),  # past the guard, then a bad TTL
    "ListPolicies": pb.ListPoliciesRequest(),
    "SetPolicy": pb.SetPolicyRequest(policy=pb.Policy(name="")),
    "DeletePolicy": pb.DeletePolicyRequest(name="nosuch"),
    "ForgetNode": pb.ForgetNodeRequest(node="nosuch"),
    "RevokeCertificate": pb.RevokeCertificateRequest(serial=""),
    "ListRevocations": pb.ListRevocationsRequest(),
    "RotateDashboardKey": pb.RotateDashboardKeyRequest(),  # changes the key: no dashboard runs here
}
AGENT_REQUESTS: dict[str, object] = {
    "GetInfo": apb.GetInfoRequest(),
    "ListProcesses": apb.ListProcessesRequest(),
    "WatchEvents": apb.WatchEventsRequest(),
    "TailLog": apb.TailLogRequest(name="nosuch"),
    "GetConfig": apb.GetConfigRequest(),
    "Start": apb.ProcessCommand(names=["nosuch"]),
    "Stop": apb.ProcessCommand(names=["nosuch"]),
    "Restart": apb.ProcessCommand(names=["nosuch"]),
    "Signal": apb.SignalCommand(names=["nosuch"], signal="HUP"),
    "ApplyConfig": apb.ApplyConfigRequest(config_text="", dry_run=True),
    "Reexec": apb.ReexecRequest(dry_run=True),
}
PEER_REQUESTS: dict[str, object] = {
    "FollowLive": ppb.FollowLiveRequest(),
}
STREAMS = {"WatchStatus", "WatchOperation", "TailLog", "WatchEvents", "FollowLive"}


def test_every_rpc_has_a_request_here() -> None:
    assert set(CONTROLLER_REQUESTS) == set(CONTROLLER_RULES)
    assert set(AGENT_REQUESTS) == set(AGENT_RULES)
    assert set(PEER_REQUESTS) == set(PEER_RULES)


@dataclass
class Credentials:
    cert: bytes | None
    key: bytes | None


def _expired(pki: Path, name: str) -> Credentials:
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.UniformResourceIdentifier(u) for u in san_uris(CLUSTER, "operator", name, ["admins"])]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return Credentials(cert.public_bytes(serialization.Encoding.PEM),
                       key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))


def _files(directory: Path, name: str) -> Credentials:
    return Credentials((directory / f"{name}.pem").read_bytes(), (directory / f"{name}.key").read_bytes())


def _call(address: str, ca: bytes, creds: Credentials, stub_class: Callable, method: str, request: object,
          node: str = "") -> str:
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, creds.key, creds.cert))
    metadata = (("fleetvisor-node", node),) if node else ()
    try:
        rpc = getattr(stub_class(channel), method)
        if method in STREAMS:
            stream = rpc(request, timeout=5, metadata=metadata)
            try:
                next(iter(stream))
            except StopIteration:
                pass
            finally:
                stream.cancel()
        else:
            rpc(request, timeout=5, metadata=metadata)
    except grpc.RpcError as exc:
        code = exc.code()  # type: ignore[attr-defined]
        if code in REFUSALS:
            return code.name
        if code == grpc.StatusCode.CANCELLED:
            return ALLOWED
    finally:
        channel.close()
    return ALLOWED


@pytest.fixture
def matrix_fleet(fleet, tmp_path: Path):
    pki, other = tmp_path / "pki", tmp_path / "other"
    make_ca(pki)
    make_ca(other, "another CA")
    issue(pki, "ctl-1", ["127.0.0.1"], role="controller", cluster=CLUSTER)
    issue(pki, "web-1", ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(pki, "web-9", ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(pki, "root-op", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(pki, "scoped-op", [], role="operator", groups=["web"], cluster=CLUSTER)
    issue(pki, "viewer", [], role="viewer", cluster=CLUSTER)
    issue(pki, "mallory", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(pki, "plain", [], cluster=CLUSTER)
    issue(other, "stranger", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(pki, "foreigner", [], role="operator", groups=["admins"], cluster="elsewhere")
    ctl = fleet.controller("ctl-1", node_ttl=3, extra=tls_flags(pki, "ctl-1"))
    agent = tls_agent(fleet.base, "web-1", ctl.address, pki)
    fleet.agents.append(agent)

    def fleetctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FLEETCTL, "--controller", ctl.address, *tls_flags(pki, "root-op"), *args],
                              capture_output=True, text=True, timeout=30, env=ENV)

    assert fleetctl("acl", "set", "web-ops", "--group", "web", "--verb", "read", "--verb", "control",
                    "--label", "role=web").returncode == 0
    revoked = fleetctl("certs", "revoke", "mallory", "--dir", str(pki))
    assert revoked.returncode == 0, revoked.stderr
    identities = {
        "agent": _files(pki, "web-9"), "controller": _files(pki, "ctl-1"), "admin": _files(pki, "root-op"),
        "scoped": _files(pki, "scoped-op"), "viewer": _files(pki, "viewer"), "no-certificate": Credentials(None, None),
        "other-ca": _files(other, "stranger"), "expired": _expired(pki, "late"), "no-role": _files(pki, "plain"),
        "revoked": _files(pki, "mallory"), "other-cluster": _files(pki, "foreigner"),
    }
    ca = (pki / "ca.pem").read_bytes()

    def agent_refuses_the_revoked_and_knows_the_policy() -> bool:
        return (_call(agent.address, ca, identities["revoked"], apb_grpc.AgentServiceStub, "GetInfo",
                      apb.GetInfoRequest()) == UNAUTHENTICATED
                and _call(agent.address, ca, identities["scoped"], apb_grpc.AgentServiceStub, "GetInfo",
                          apb.GetInfoRequest()) == ALLOWED)
    wait_for(agent_refuses_the_revoked_and_knows_the_policy, 20,
             "the agent to receive the revocation and the policy with its heartbeat answers")
    return ctl, agent, ca, identities


def test_role_by_rpc_matrix(matrix_fleet) -> None:
    ctl, agent, ca, identities = matrix_fleet
    table, refusals = documented()
    wrong: list[str] = []
    for name, creds in identities.items():
        for method, request in CONTROLLER_REQUESTS.items():
            want = expected(name, f"ControllerService.{method}", table, refusals)
            got = _call(ctl.address, ca, creds, pb_grpc.ControllerServiceStub, method, request)
            if got != want:
                wrong.append(f"{name} -> ControllerService/{method}: {got}, expected {want}")
        for method, request in PEER_REQUESTS.items():
            want = expected(name, f"PeerService.{method}", table, refusals)
            got = _call(ctl.address, ca, creds, ppb_grpc.PeerServiceStub, method, request)
            if got != want:
                wrong.append(f"{name} -> PeerService/{method}: {got}, expected {want}")
        for method, request in AGENT_REQUESTS.items():
            want = expected(name, f"AgentService.{method}", table, refusals)
            node = "web-1" if name == "controller" else ""
            got = _call(agent.address, ca, creds, apb_grpc.AgentServiceStub, method, request, node)
            if got != want:
                wrong.append(f"{name} -> AgentService/{method}: {got}, expected {want}")
    assert not wrong, "\n".join(wrong)
