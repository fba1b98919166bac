"""The admin commands end to end: `fleetctl acl`, `nodes forget`, `certs revoke` and `certs
revoked` against a real controller, real agents and a real etcd, judged by what fleetctl
prints, how it exits, what lands in etcd and what the audit log says.

Most fleets here are plaintext on loopback, whose callers are admins; the last test is a
mutual-TLS fleet where only operators in group admins may administer.
"""

from __future__ import annotations

import json
import re
import subprocess

import grpc
import pytest
from aetcd import rpc
from cryptography import x509

from fleetvisor.agent.security.policy import MAX_POLICIES, Policy
from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.controller.etcd import prefix_range_end
from fleetvisor.controller.records import MemberRecord, encode, prefix_of
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc
from tests.support import wait_for

from .fleet_harness import CLUSTER, FLEETCTL, SLEEPER, fleetctl, fleetctl_json, one_line_error, states, wait_status
from .test_fleet_tls import ENV, tls_flags
from .test_fleetctl_fleet import ok, table_rows

PREFIX = prefix_of(CLUSTER)


def etcd_keys(etcd, subprefix: str) -> dict[str, bytes]:
    """What etcd itself holds under the cluster's `subprefix`, keys relative to the cluster prefix."""
    start = (PREFIX + subprefix).encode()
    with grpc.insecure_channel(etcd.endpoint) as channel:
        reply = rpc.KVStub(channel).Range(rpc.RangeRequest(key=start, range_end=prefix_range_end(start)), timeout=10)
    return {kv.key.decode()[len(PREFIX):]: kv.value for kv in reply.kvs}


def audit(ctl) -> list[tuple[str, bool, str]]:
    return [(e["action"], e["ok"], e["result"]) for e in fleetctl_json(ctl.address, "audit")["entries"]]


def run(ctl, *args: str) -> subprocess.CompletedProcess:
    return fleetctl(ctl.address, *args)


@pytest.fixture
def ctl(fleet):
    c = fleet.controller(node_ttl=2)
    wait_for(c.is_leader, 10, "ctl-1 to lead")
    return c


# -- policies ----------------------------------------------------------------------------------

WEB_OPS = {"name": "web-ops", "verbs": ["control", "read"], "users": [], "groups": ["web"], "roles": [],
           "labels": {"role": "web"}, "nodes": "*", "programs": "web:*", "run_as": []}
DEPLOY = {"name": "deploy-web", "verbs": ["deploy"], "users": ["alice"], "groups": [], "roles": ["viewer"],
          "labels": {}, "nodes": "web-*", "programs": "*", "run_as": ["nobody", "www-data"]}


def test_acl_set_list_show_delete_round_trip(ctl, etcd):
    assert fleetctl_json(ctl.address, "acl", "list") == {"policies": []}
    assert ok(ctl, "acl", "list").split() == ["NAME", "VERBS", "SUBJECTS", "SCOPE", "RUN", "AS"]

    shown = ok(ctl, "acl", "set", "web-ops", "--group", "web", "--verb", "read", "--verb", "control",
               "--label", "role=web", "--programs", "web:*")
    assert [re.split(r"\s{2,}", line.strip()) for line in shown.splitlines()] == [
        ["name", "web-ops"], ["verbs", "control,read"], ["users", "-"], ["groups", "web"], ["roles", "-"],
        ["labels", "role=web"], ["nodes", "*"], ["programs", "web:*"], ["run as", "-"]]
    stored = fleetctl_json(ctl.address, "acl", "set", "deploy-web", "--user", "alice", "--role", "viewer",
                           "--verb", "deploy", "--nodes", "web-*", "--run-as", "www-data", "--run-as", "nobody")
    assert stored == DEPLOY

    assert fleetctl_json(ctl.address, "acl", "list") == {"policies": [DEPLOY, WEB_OPS]}
    table = table_rows(ok(ctl, "acl", "list"))
    assert table == {"deploy-web": ["deploy-web", "deploy", "users alice; roles viewer", "nodes web-*",
                                    "nobody,www-data"],
                     "web-ops": ["web-ops", "control,read", "groups web", "role=web programs web:*", "-"]}
    assert fleetctl_json(ctl.address, "acl", "show", "web-ops") == WEB_OPS
    assert "programs  web:*" in ok(ctl, "acl", "show", "web-ops")

    # etcd holds what the enforcing side reads: acl/<name> = Policy.to_json()
    keys = etcd_keys(etcd, "acl/")
    assert sorted(keys) == ["acl/deploy-web", "acl/web-ops"]
    assert Policy.from_json(keys["acl/web-ops"]).to_json().encode() == keys["acl/web-ops"]
    assert json.loads(keys["acl/deploy-web"])["run_as"] == ["nobody", "www-data"]

    # set replaces the whole policy (nothing merged)
    replaced = fleetctl_json(ctl.address, "acl", "set", "web-ops", "--group", "web", "--verb", "read")
    assert replaced == {**WEB_OPS, "verbs": ["read"], "labels": {}, "programs": "*"}
    assert fleetctl_json(ctl.address, "acl", "show", "web-ops") == replaced

    assert ok(ctl, "acl", "delete", "web-ops") == "policy web-ops deleted\n"
    assert fleetctl_json(ctl.address, "acl", "delete", "deploy-web") == {"deleted": "deploy-web"}
    assert etcd_keys(etcd, "acl/") == {}
    for args in (("acl", "show", "web-ops"), ("acl", "delete", "web-ops")):
        missing = run(ctl, *args)
        assert missing.returncode == 4 and one_line_error(missing) == "error: no such policy: web-ops"

    assert audit(ctl) == [("acl.set", True, "policy web-ops created"), ("acl.set", True, "policy deploy-web created"),
                          ("acl.set", True, "policy web-ops replaced"), ("acl.delete", True, "policy web-ops deleted"),
                          ("acl.delete", True, "policy deploy-web deleted"),
                          ("acl.delete", False, "no such policy: web-ops")]


@pytest.mark.parametrize("args, error", [
    (("--verb", "read"), "a policy needs at least one subject: a user, a group or a role"),
    (("--verb", "read", "--user", "bad name"), "user name 'bad name' is not plain"),
    (("--verb", "read", "--group", "ops", "--role", "agent"), "roles may be operator, viewer or controller"),
    (("--verb", "read", "--group", "ops", "--label", "role=web app"), "label value name 'web app' is not plain"),
    (("--verb", "read", "--group", "ops", "--nodes", "web 1"), "scope.nodes must be a glob without spaces"),
    (("--verb", "deploy", "--group", "ops", "--run-as", "../root"), "run_as user name '../root' is not plain"),
])
def test_a_bad_policy_is_refused_naming_the_field_and_nothing_is_stored(ctl, etcd, args, error):
    result = run(ctl, "acl", "set", "web-ops", *args)
    assert result.returncode == 2 and not result.stdout
    assert error in one_line_error(result)
    assert etcd_keys(etcd, "acl/") == {}
    assert fleetctl_json(ctl.address, "acl", "list") == {"policies": []}
    [(action, succeeded, why)] = audit(ctl)
    assert (action, succeeded) == ("acl.set", False) and error in why


def test_bad_names_and_bounds_are_refused(ctl, etcd):
    bad_name = run(ctl, "acl", "set", "web/ops", "--group", "ops", "--verb", "read")
    assert bad_name.returncode == 2 and "policy name 'web/ops' is not plain" in one_line_error(bad_name)
    bad_verb = run(ctl, "acl", "set", "web-ops", "--group", "ops", "--verb", "root")
    assert bad_verb.returncode == 2 and "'--verb'" in one_line_error(bad_verb)

    too_big = pb.Policy(name="big", verbs=["read"], users=[f"user-{i:05d}" for i in range(2000)])
    with pytest.raises(grpc.RpcError) as refused:
        ctl.stub.SetPolicy(pb.SetPolicyRequest(policy=too_big), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limited to 16384 bytes" in refused.value.details()

    # at most MAX_POLICIES: one more is refused, replacing one of them is not
    with grpc.insecure_channel(etcd.endpoint) as channel:
        kv = rpc.KVStub(channel)
        for i in range(MAX_POLICIES):
            policy = Policy.from_json(json.dumps({"name": f"p{i:04d}", "verbs": ["read"],
                                                  "subjects": {"groups": ["ops"]}}))
            kv.Put(rpc.PutRequest(key=f"{PREFIX}acl/{policy.name}".encode(), value=policy.to_json().encode()),
                   timeout=10)
    # a thousand keys through the watch, and a fleetctl process per look: generous on a loaded machine
    wait_for(lambda: len(fleetctl_json(ctl.address, "acl", "list")["policies"]) == MAX_POLICIES, 60,
             "the controller to see every policy")
    full = run(ctl, "acl", "set", "one-more", "--group", "ops", "--verb", "read")
    assert full.returncode == 1 and f"the fleet has {MAX_POLICIES} policies" in one_line_error(full)
    assert "acl/one-more" not in etcd_keys(etcd, "acl/")
    ok(ctl, "acl", "set", "p0000", "--group", "ops", "--verb", "control")


def test_admin_writes_sent_to_a_follower_reach_the_leader_and_followers_answer_reads(fleet):
    a = fleet.controller("ctl-a")
    b = fleet.controller("ctl-b")
    leader = wait_for(lambda: next((c for c in (a, b) if c.is_leader()), None), 10, "a leader")
    follower = b if leader is a else a
    ok(follower, "acl", "set", "web-ops", "--group", "web", "--verb", "read")
    ok(follower, "certs", "revoke", "abc")
    assert [p["name"] for p in fleetctl_json(leader.address, "acl", "list")["policies"]] == ["web-ops"]
    assert [r["serial"] for r in fleetctl_json(leader.address, "certs", "revoked")["revoked"]] == ["abc"]
    wait_for(lambda: [p["name"] for p in fleetctl_json(follower.address, "acl", "list")["policies"]] == ["web-ops"]
             and [r["serial"] for r in fleetctl_json(follower.address, "certs", "revoked")["revoked"]] == ["abc"],
             10, "the follower to list the policy and the revocation")
    entries = fleetctl_json(follower.address, "audit")["entries"]
    assert [(e["action"], e["controller_id"]) for e in entries] == [("acl.set", leader.name),
                                                                    ("certs.revoke", leader.name)]


# -- nodes forget ------------------------------------------------------------------------------

def test_nodes_forget_is_refused_while_the_node_is_up_and_removes_it_once_down(fleet, ctl, etcd, tmp_path):
    for name in ("web-1", "web-2"):
        fleet.agent(name, ctl, labels="role=web", programs=SLEEPER.format(name="app"))
    wait_status(ctl, lambda s: sorted(states(s)) == ["web-1:app", "web-2:app"]
                and all(n.node.reachable for n in s.nodes), what="two live nodes")
    (tmp_path / "extra.conf").write_text("[program:extra]\ncommand=sleep 1000\nstartsecs=0\nstopwaitsecs=2\n")
    ok(ctl, "config", "push", str(tmp_path / "extra.conf"), "--name", "extra", "--nodes", "web-1,web-2",
       "-m", "both")

    up = run(ctl, "nodes", "forget", "web-2")
    assert up.returncode == 1 and not up.stdout
    assert "node web-2 is up (its agent heartbeats): stop the agent" in one_line_error(up)
    assert [n["name"] for n in fleetctl_json(ctl.address, "nodes")["nodes"]] == ["web-1", "web-2"]

    next(a for a in fleet.agents if a.node == "web-2").stop()
    wait_for(lambda: not ctl.node("web-2").up, 15, "web-2 shown down")
    assert ok(ctl, "nodes", "forget", "web-2") == "node web-2 forgotten\n"

    assert [n["name"] for n in fleetctl_json(ctl.address, "nodes")["nodes"]] == ["web-1"]
    assert list(table_rows(ok(ctl, "nodes"))) == ["web-1"]
    assert [n["node"]["name"] for n in fleetctl_json(ctl.address, "status")["nodes"]] == ["web-1"]
    assert [n["node"] for n in fleetctl_json(ctl.address, "config", "status")["nodes"]] == ["web-1"]
    # the config's assignment no longer names it, so a push that reuses the assignment works
    [extra] = fleetctl_json(ctl.address, "config", "list")["configs"]
    assert extra["assignment"]["nodes"] == ["web-1"] and extra["target_nodes"] == ["web-1"]
    (tmp_path / "extra.conf").write_text("[program:extra]\ncommand=sleep 1001\nstartsecs=0\nstopwaitsecs=2\n")
    assert "extra revision 2 stored; targets: web-1" in ok(ctl, "config", "push", str(tmp_path / "extra.conf"),
                                                           "--name", "extra", "-m", "again")

    # a node registered before names were checked (as the 200 fake ones were) can be forgotten too
    junk = "junk/0/../../x<script>"
    with grpc.insecure_channel(etcd.endpoint) as channel:
        rpc.KVStub(channel).Put(rpc.PutRequest(key=f"{PREFIX}members/{junk}".encode(),
                                               value=encode(MemberRecord(name=junk, address="127.0.0.1:1"))),
                                timeout=10)
    wait_for(lambda: junk in [n["name"] for n in fleetctl_json(ctl.address, "nodes")["nodes"]], 10,
             "the controller to list the junk node")
    assert ok(ctl, "nodes", "forget", junk) == f"node {junk} forgotten\n"
    assert [n["name"] for n in fleetctl_json(ctl.address, "nodes")["nodes"]] == ["web-1"]
    assert sorted(etcd_keys(etcd, "members/")) == ["members/web-1"]

    gone = run(ctl, "nodes", "forget", "web-2")
    assert gone.returncode == 4 and one_line_error(gone) == "error: no such node: web-2"
    labelled = run(ctl, "nodes", "--label", "role=web", "forget", "web-1")
    assert labelled.returncode == 2 and "--label is for listing nodes" in one_line_error(labelled)
    assert [(a, succeeded) for a, succeeded, _ in audit(ctl) if a == "node.forget"] == \
        [("node.forget", False), ("node.forget", True), ("node.forget", True), ("node.forget", False)]
    assert ("node.forget", True, "node web-2 forgotten; taken out of the assignments of extra") in audit(ctl)


# -- certificate revocation --------------------------------------------------------------------

def test_certs_revoke_by_serial_and_by_name_and_certs_revoked_lists_them(ctl, etcd, tmp_path):
    pki = tmp_path / "pki"
    make_ca(pki)
    cert, _ = issue(pki, "mallory", [], role="operator", groups=["admins"], cluster=CLUSTER)
    serial = format(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number, "x")

    by_name = ok(ctl, "certs", "revoke", "mallory", "--dir", str(pki))
    assert by_name.startswith(f"certificate {serial} (mallory) revoked by ")
    by_serial = fleetctl_json(ctl.address, "certs", "revoke", "0A:BC:00")
    assert by_serial["serial"] == "abc00" and by_serial["name"] == ""
    again = fleetctl_json(ctl.address, "certs", "revoke", serial.upper())  # already revoked: unchanged
    assert again["serial"] == serial and again["name"] == "mallory"

    listed = fleetctl_json(ctl.address, "certs", "revoked")["revoked"]
    assert [(r["serial"], r["name"]) for r in listed] == [(serial, "mallory"), ("abc00", "")]
    assert all(r["who"].endswith("(unverified)") and r["time"] > 0 for r in listed)
    table = table_rows(ok(ctl, "certs", "revoked"))
    assert list(table) == [serial, "abc00"] and table[serial][1] == "mallory" and table["abc00"][1] == "-"

    # etcd holds what the enforcing side reads: revoked/<serial> = {"serial", "name", "who", "time"}
    keys = etcd_keys(etcd, "revoked/")
    assert sorted(keys) == sorted([f"revoked/{serial}", "revoked/abc00"])
    record = json.loads(keys[f"revoked/{serial}"])
    assert sorted(record) == ["name", "serial", "time", "who"] and record["name"] == "mallory"

    for args, error in ((("nothex",), "serial 'nothex' is not a certificate serial number"),
                        (("ab" * 21,), "is not a certificate serial number"),
                        (("ghost", "--dir", str(pki)), f"cannot read certificate {pki}/ghost.pem: No such file"),
                        (("../pki/mallory", "--dir", str(pki)), "certificate name '../pki/mallory' is not plain")):
        refused = run(ctl, "certs", "revoke", *args)
        assert refused.returncode == 2 and not refused.stdout, refused.stdout + refused.stderr
        assert error in one_line_error(refused)
    assert len(etcd_keys(etcd, "revoked/")) == 2

    assert [(a, succeeded, why) for a, succeeded, why in audit(ctl)] == [
        ("certs.revoke", True, f"certificate {serial} (mallory) revoked"),
        ("certs.revoke", True, "certificate abc00 revoked"),
        ("certs.revoke", True, f"certificate {serial} was revoked already, by {listed[0]['who']}"),
        ("certs.revoke", False, "serial 'nothex' is not a certificate serial number: give up to 40 hex digits "
                                "(e.g. 4a3f09c1)"),
        ("certs.revoke", False, f"serial '{'ab' * 21}' is not a certificate serial number: give up to 40 hex "
                                "digits (e.g. 4a3f09c1)")]


# -- only admins administer ----------------------------------------------------------------------

def test_an_operator_outside_group_admins_may_not_administer(fleet, tmp_path):
    pki = tmp_path / "pki"
    make_ca(pki)
    issue(pki, "ctl-1", ["127.0.0.1"], role="controller", cluster=CLUSTER)
    issue(pki, "alice", [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(pki, "bob", [], role="operator", groups=["web"], cluster=CLUSTER)
    ctl = fleet.controller("ctl-1", extra=tls_flags(pki, "ctl-1"))

    def as_(who: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*FLEETCTL, "--controller", ctl.address, *tls_flags(pki, who), *args],
                              capture_output=True, text=True, timeout=30, env=ENV)

    wait_for(lambda: as_("alice", "leader").returncode == 0, 10, "ctl-1 to lead")
    policy = ("acl", "set", "web-ops", "--group", "web", "--verb", "control")
    refused = as_("bob", *policy)
    assert refused.returncode == 1 and not refused.stdout
    assert "operator bob (groups web) may not admin" in one_line_error(refused)
    for args in (("acl", "list"), ("certs", "revoke", "abc"), ("certs", "revoked"), ("nodes", "forget", "web-1")):
        assert "may not admin" in one_line_error(as_("bob", *args)), args

    # the status code itself, with bob's certificate on a plain gRPC channel
    creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes(), (pki / "bob.key").read_bytes(),
                                         (pki / "bob.pem").read_bytes())
    with grpc.secure_channel(ctl.address, creds) as channel:
        with pytest.raises(grpc.RpcError) as denied:
            pb_grpc.ControllerServiceStub(channel).SetPolicy(
                pb.SetPolicyRequest(policy=pb.Policy(name="web-ops", verbs=["admin"], groups=["web"])), timeout=10)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    listing = json.loads(as_("alice", "-o", "json", "acl", "list").stdout)
    assert listing == {"policies": []}  # nothing was stored by bob
    assert as_("alice", *policy).returncode == 0
    audit_entries = json.loads(as_("alice", "-o", "json", "audit").stdout)["entries"]
    assert ("acl.set", "alice", True) in [(e["action"], e["who"], e["ok"]) for e in audit_entries]
