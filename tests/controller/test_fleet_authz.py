"""The controller enforces identities, scopes and node binding over real mutual TLS.

A real etcd, a real controller and real agents, certificates from `fleetctl certs`' own
functions; policies are put into etcd as the admin RPCs would store them. Every refusal is
checked to be one clear PERMISSION_DENIED line that changed nothing on any node, and to be in
`fleetctl audit`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest

from fleetvisor.agent.security.identity import from_pem
from fleetvisor.agent.security.policy import make
from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.controller.records import prefix_of
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc
from tests.support import wait_for

from .fleet_harness import CLUSTER, FLEETCTL, SLEEPER, Agent, one_line_error
from .test_fleet_tls import ENV, tls_flags

ADMIN, BOB, RITA, VIC = "alice", "bob", "rita", "vic"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    make_ca(directory)
    issue(directory, "ctl-1", ["127.0.0.1"], role="controller", cluster=CLUSTER)
    for name in ("web-1", "web-2", "db-1"):
        issue(directory, name, ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(directory, ADMIN, [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(directory, BOB, [], role="operator", groups=["web"], cluster=CLUSTER)
    issue(directory, RITA, [], role="operator", cluster=CLUSTER)
    issue(directory, VIC, [], role="viewer", cluster=CLUSTER)
    return directory


class Fleet:
    def __init__(self, fleet, pki: Path, nodes: dict[str, str]) -> None:
        self.fleet = fleet
        self.pki = pki
        self.ctl = fleet.controller("ctl-1", node_ttl=3, extra=tls_flags(pki, "ctl-1"))
        self.agents = {}
        for node, role in nodes.items():
            tls = f"tls_cert={pki / node}.pem\ntls_key={pki / node}.key\ntls_ca={pki / 'ca.pem'}\n"
            agent = Agent(fleet.base, node, [self.ctl.address], labels=f"role={role}",
                          programs=SLEEPER.format(name="web") + SLEEPER.format(name="app"), fleetvisor_extra=tls)
            fleet.agents.append(agent)
            self.agents[node] = agent
        wait_for(lambda: self.pids() and len(self.pids()) == 2 * len(nodes), 30, "every agent live over TLS")
        wait_for(lambda: self.json("leader")["is_leader"], 10, "ctl-1 to lead")

    def run(self, user: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FLEETCTL, "--controller", self.ctl.address, *tls_flags(self.pki, user), *args],
                              capture_output=True, text=True, timeout=30, env=ENV)

    def json(self, *args: str, user: str = ADMIN):
        result = self.run(user, "-o", "json", *args)
        assert result.returncode in (0, 3), result.stderr
        return json.loads(result.stdout)

    def pids(self) -> dict[str, int]:
        """{"node:group:name": pid} of every RUNNING process, as the admin sees it."""
        result = self.run(ADMIN, "-o", "json", "status")
        if result.returncode not in (0, 3):
            return {}
        return {f"{n['node']['name']}:{p['group']}:{p['name']}": p["pid"] for n in json.loads(result.stdout)["nodes"]
                if n["node"]["reachable"] for p in n["processes"] if p["statename"] == "RUNNING"}

    def put_policy(self, name: str, verbs: list[str], **kwargs) -> None:
        revision = self.fleet.etcd.put(f"{prefix_of(CLUSTER)}acl/{name}".encode(),
                                       make(name, verbs, **kwargs).to_json().encode())
        self.ctl.wait_line(f"security state at etcd revision {revision}:")

    def denied(self) -> list[dict]:
        return [e for e in self.json("audit")["entries"] if e["action"] == "denied"]

    def stub(self, cert: str) -> pb_grpc.ControllerServiceStub:
        creds = grpc.ssl_channel_credentials((self.pki / "ca.pem").read_bytes(),
                                             (self.pki / f"{cert}.key").read_bytes(),
                                             (self.pki / f"{cert}.pem").read_bytes())
        channel = grpc.secure_channel(self.ctl.address, creds)
        return pb_grpc.ControllerServiceStub(channel)


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode != 0 and not result.stdout, result.stdout + result.stderr
    line = one_line_error(result)
    assert all(w in line for w in words), line
    return line


def test_agent_certificates_push_nothing_and_heartbeat_only_for_their_own_node(fleet, pki, tmp_path):
    f = Fleet(fleet, pki, {"web-1": "web", "web-2": "web"})
    before = f.pids()
    nodes = [(n["name"], n["address"]) for n in f.json("nodes")["nodes"]]

    # an agent's certificate may not push a config: nothing stored, nothing pushed
    (tmp_path / "evil.conf").write_text("[program:evil]\ncommand=sleep 1000\n")
    push = f.run("web-2", "config", "push", str(tmp_path / "evil.conf"), "--name", "evil", "--nodes", "web-1",
                 "-m", "evil")
    refused(push, "agent web-2 may not deploy")
    assert f.json("config", "list") == {"configs": []}

    # web-2's certificate heartbeating as web-1, or as 200 made-up nodes: refused, nothing registered
    web2 = f.stub("web-2")
    forged = pb.HeartbeatRequest(node="web-1", address="127.0.0.1:1", agent_run_id="forged")
    with pytest.raises(grpc.RpcError) as caught:
        web2.Heartbeat(forged, timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "agent web-2 may not heartbeat for node web-1; its certificate is for node web-2"
    codes = set()
    for i in range(200):
        try:
            web2.Heartbeat(pb.HeartbeatRequest(node=f"fake-{i}", address="127.0.0.1:1"), timeout=5)
        except grpc.RpcError as exc:
            codes.add(exc.code())
    assert codes == {grpc.StatusCode.PERMISSION_DENIED}
    with pytest.raises(grpc.RpcError) as caught:
        web2.Heartbeat(pb.HeartbeatRequest(node="../web-1", address="127.0.0.1:1"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not plain" in caught.value.details()
    assert [(n["name"], n["address"]) for n in f.json("nodes")["nodes"]] == nodes

    # web-2's own certificate claiming web-1's address: audited, and calls for web-2 never reach web-1
    f.agents["web-2"].stop()
    wait_for(lambda: not {n["name"]: n for n in f.json("nodes")["nodes"]}["web-2"]["up"], 15, "web-2 down")
    web1_address = f.agents["web-1"].address
    claim = pb.HeartbeatRequest(node="web-2", address=web1_address, agent_run_id="claim")
    reply = web2.Heartbeat(claim, timeout=5)
    assert reply.HasField("security") and reply.security.revision > 0  # the agent holds none: it is sent
    claim.security_revision = reply.security.revision
    assert not web2.Heartbeat(claim, timeout=5).HasField("security")  # up to date: not sent again
    claims = [e for e in f.json("audit")["entries"] if e["action"].startswith("node.address")]
    assert {e["action"] for e in claims} == {"node.address", "node.address-conflict"}
    conflict = next(e for e in claims if e["action"] == "node.address-conflict")
    assert conflict["who"] == "agent web-2" and not conflict["ok"]
    assert conflict["result"] == f"node web-2 claims address {web1_address}, which live node web-1 uses"
    stop = f.run(ADMIN, "stop", "web-2:*")
    assert stop.returncode != 0 and "unreachable" in stop.stdout, stop.stdout  # web-1's certificate is not web-2's
    web1 = {k: v for k, v in before.items() if k.startswith("web-1:")}
    assert {k: v for k, v in f.pids().items() if k.startswith("web-1:")} == web1

    # the refusals are audited, at most a burst per identity: the flood did not fill etcd
    denied = f.denied()
    assert {e["who"] for e in denied} == {"agent web-2"}
    assert 2 <= len(denied) <= 20
    assert any(e["result"] == "agent web-2 may not heartbeat for node web-1; its certificate is for node web-2"
               for e in denied)
    assert any("PushConfig" in e["detail"] for e in denied)
    table = f.run(ADMIN, "audit")
    assert table.returncode == 0 and "denied" in table.stdout


def test_scoped_operators_viewers_and_readers(fleet, pki, tmp_path):
    f = Fleet(fleet, pki, {"web-1": "web", "db-1": "db"})
    f.put_policy("web-ops", ["read", "control"], groups=["web"], labels={"role": "web"}, programs="web:*")
    f.put_policy("web-deploy", ["deploy"], groups=["web"], labels={"role": "web"}, programs="extra*",
                 run_as=["nobody"])
    f.put_policy("db-readers", ["read"], users=[RITA], labels={"role": "db"})
    before = f.pids()

    # bob may restart web:* on a role=web node, not on a role=db node, nor both at once
    assert f.run(BOB, "restart", "web-1:web:*").returncode == 0
    wait_for(lambda: f.pids().get("web-1:web:web") not in (None, before["web-1:web:web"]), 10, "web restarted")
    after_ok = f.pids()
    refused(f.run(BOB, "restart", "db-1:web:*"),
            f"operator {BOB} (groups web) may not control db-1:web: no policy grants it")
    refused(f.run(BOB, "restart", "*:web:*"), "may not control db-1:web: no policy grants it")
    refused(f.run(BOB, "restart", "web-1:app"), "may not control web-1:app: no policy grants it")
    assert f.pids() == after_ok

    # bob's deploy policy has no root in run_as: user=root and no user= are refused, nobody is fine
    conf = tmp_path / "extra.conf"
    for user_line in ("user=root\n", ""):
        conf.write_text(f"[program:extra]\ncommand=sleep 1000\nstartsecs=0\n{user_line}")
        refused(f.run(BOB, "config", "push", str(conf), "--name", "extra", "--label", "role=web", "-m", "m"),
                "may not deploy extra:extra as user root to role=web")
    conf.write_text("[program:extra]\ncommand=sleep 1000\nstartsecs=0\nuser=nobody\n")
    for where in (("--nodes", "db-1"), ("--label", "role=db")):
        refused(f.run(BOB, "config", "push", str(conf), "--name", "extra", *where, "-m", "m"), "may not deploy")
    assert f.json("config", "list") == {"configs": []}
    pushed = f.run(BOB, "config", "push", str(conf), "--name", "extra", "--label", "role=web", "-m", "m")
    assert pushed.returncode == 0 and "targets: web-1" in pushed.stdout, pushed.stdout + pushed.stderr

    # a rolling restart is a deploy on its selector and group: bob deploys extra* only
    refused(f.run(BOB, "rolling-restart", "web", "--label", "role=web", "--dry-run"),
            "may not deploy on group web of role=web")
    # a rolling agent upgrade is a deploy on each whole node, as the agents' own Reexec
    refused(f.run(BOB, "rolling-upgrade", "web-*", "--dry-run"), "may not deploy the whole node web-1")

    # a viewer sees everything and may change nothing; rita reads only role=db nodes
    assert [n["node"]["name"] for n in f.json("status", user=VIC)["nodes"]] == ["db-1", "web-1"]
    refused(f.run(VIC, "restart", "all"), f"viewer {VIC} may not control")
    assert [n["node"]["name"] for n in f.json("status", user=RITA)["nodes"]] == ["db-1"]
    assert [n["name"] for n in f.json("nodes", user=RITA)["nodes"]] == ["db-1"]
    assert [n["node"] for n in f.json("config", "status", user=RITA)["nodes"]] == ["db-1"]
    refused(f.run(RITA, "tail", "web-1:web"), f"operator {RITA} may not read web-1:web")

    # configs and operations are read where they go; the audit log needs read everywhere
    assert [c["name"] for c in f.json("config", "list", user=BOB)["configs"]] == ["extra"]
    assert f.json("config", "list", user=RITA) == {"configs": []}
    for args in (("config", "history", "extra"), ("config", "show", "extra"), ("config", "show", "nosuch")):
        refused(f.run(RITA, *args), f"operator {RITA} may not read config ")
    started = f.run(ADMIN, "-o", "json", "rolling-restart", "web", "--label", "role=web", "--detach")
    assert started.returncode == 0, started.stderr
    op_id = json.loads(started.stdout)["id"]
    assert [o["id"] for o in f.json("ops", "list", "--all", user=BOB)["operations"]] == [op_id]
    assert f.json("ops", "list", "--all", user=RITA)["operations"] == []
    for some_id in (op_id, "nosuch"):
        refused(f.run(RITA, "ops", "show", some_id), f"operator {RITA} may not read operation {some_id}")
    refused(f.run(RITA, "audit"), f"operator {RITA} may not read the audit log")

    # operations are steered with deploy on their group: bob may abort his own restart of
    # extra, not pause the admin's of web
    mine = f.run(BOB, "-o", "json", "rolling-restart", "extra", "--label", "role=web", "--healthy-for", "60s",
                 "--detach")
    assert mine.returncode == 0, mine.stderr
    refused(f.run(BOB, "ops", "pause", op_id), "may not deploy on group web of role=web")
    assert f.run(BOB, "ops", "abort", json.loads(mine.stdout)["id"]).returncode == 0

    assert {k: v for k, v in f.pids().items() if k.startswith("db-1:")} == \
        {k: v for k, v in before.items() if k.startswith("db-1:")}
    denied = f.denied()
    assert {e["who"] for e in denied} == {BOB, VIC, RITA}
    assert sum(e["who"] == RITA for e in denied) == 7
    assert sum(e["who"] == BOB for e in denied) == 10
    assert all(e["result"].endswith("no policy grants it") for e in denied)

    # a revoked certificate is refused from the next call on, without a restart, and a stream
    # it has open is cut
    watching = f.stub(BOB).WatchStatus(pb.StatusRequest(), timeout=60)
    assert next(watching).nodes
    serial = from_pem((pki / f"{BOB}.pem").read_bytes()).serial
    revision = f.fleet.etcd.put(f"{prefix_of(CLUSTER)}revoked/{serial}".encode(),
                                json.dumps({"serial": serial, "name": BOB, "who": ADMIN, "time": 0}).encode())
    f.ctl.wait_line(f"security state at etcd revision {revision}: 3 policies, 1 revoked certificates")
    refused(f.run(BOB, "status"), f"certificate serial {serial} is revoked")
    with pytest.raises(grpc.RpcError) as cut:
        for _ in watching:
            pass
    assert cut.value.code() == grpc.StatusCode.UNAUTHENTICATED and "is revoked" in cut.value.details()
    assert f.run(VIC, "status").returncode in (0, 3)
