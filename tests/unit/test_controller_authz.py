"""The controller's pure authorization parts: policy records from etcd, scope checks and the
refusal audit's rate limit (with an injected clock)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pytest

from fleetvisor.agent.security.identity import LOCAL, Identity
from fleetvisor.agent.security.policy import Authorizer, make
from fleetvisor.controller.acl import parse
from fleetvisor.controller.audit import Refusals
from fleetvisor.controller.authorize import Checks, run_as_name
from fleetvisor.controller.errors import PermissionDenied
from fleetvisor.controller.records import MemberRecord, Selector

BOB = Identity("operator", "bob", frozenset({"web"}), "test", "1")
POLICIES = [make("web-ops", ["read", "control", "deploy"], groups=["web"], labels={"role": "web"},
                 programs="web:*", run_as=["nobody"])]
WEB = MemberRecord("web-1", "127.0.0.1:1", {"role": "web"})
DB = MemberRecord("db-1", "127.0.0.1:2", {"role": "db"})


@dataclass(frozen=True)
class Proc:
    group: str
    name: str

    @property
    def namespec(self) -> str:
        return self.group if self.group == self.name else f"{self.group}:{self.name}"


def checks() -> Checks:
    authorizer = Authorizer(POLICIES)
    return Checks(lambda: authorizer)


def test_records_that_do_not_parse_are_skipped_and_logged_once_by_key(caplog):
    entries = {"acl/web-ops": POLICIES[0].to_json().encode(), "acl/broken": b"{not json SECRET",
               "acl/renamed": make("other", ["read"], users=["x"]).to_json().encode(),
               "revoked/ABC": json.dumps({"serial": "abc", "name": "web-2"}).encode()}
    bad: set[str] = set()
    with caplog.at_level(logging.ERROR, "fleetvisor.controller"):
        policies, revoked = parse(entries, bad)
        parse(entries, bad)
    assert [p.name for p in policies] == ["web-ops"] and revoked == {"abc": "web-2"}
    assert bad == {"acl/broken", "acl/renamed"}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "SECRET" not in "".join(messages)
    assert any(m.startswith("ignoring acl/broken in etcd") for m in messages)


def test_control_is_refused_whole_when_one_target_is_out_of_scope():
    c = checks()
    c.control(BOB, [(WEB, [Proc("web", "web")])])
    with pytest.raises(PermissionDenied, match=r"^operator bob \(groups web\) may not control db-1:web: "):
        c.control(BOB, [(WEB, [Proc("web", "web")]), (DB, [Proc("web", "web")])])
    with pytest.raises(PermissionDenied, match="web-1:app"):
        c.control(BOB, [(WEB, [Proc("app", "app")])])
    c.control(LOCAL, [(DB, [Proc("app", "app")])])


def test_deploy_needs_the_selector_every_program_and_its_user_covered():
    c = checks()
    web = Selector((), {"role": "web"})
    c.deploy(BOB, web, [("web", "web", "nobody")])
    for user in ("root", None, "0"):
        with pytest.raises(PermissionDenied, match="as user root to role=web"):
            c.deploy(BOB, web, [("web", "web", user)])
    with pytest.raises(PermissionDenied, match="to nodes web-1"):
        c.deploy(BOB, Selector(("web-1",)), [("web", "web", "nobody")])
    with pytest.raises(PermissionDenied, match="app:app"):
        c.deploy(BOB, web, [("web", "web", "nobody"), ("app", "app", "nobody")])
    c.deploy_group(BOB, web, "web")
    with pytest.raises(PermissionDenied, match="every group"):
        c.deploy_group(BOB, web, "")
    assert run_as_name(None) == "root" and run_as_name("0") == "root"


def test_an_agent_upgrade_needs_deploy_on_each_whole_node():
    """As the agents' own Reexec: deploy scoped to some programs is not enough, nor to other nodes."""
    whole = Authorizer([make("web-admins", ["deploy"], groups=["web"], labels={"role": "web"})])
    c = Checks(lambda: whole)
    c.whole_nodes(BOB, [WEB])
    with pytest.raises(PermissionDenied, match="may not deploy the whole node db-1"):
        c.whole_nodes(BOB, [WEB, DB])
    with pytest.raises(PermissionDenied, match="may not deploy the whole node web-1"):
        checks().whole_nodes(BOB, [WEB])  # its grant covers web:* only
    c.whole_nodes(LOCAL, [WEB, DB])


def test_reads_are_filtered_to_the_scope():
    c = checks()
    assert not c.sees_all(BOB) and c.sees_all(LOCAL)
    assert c.sees_node(BOB, "web-1", WEB.labels) and not c.sees_node(BOB, "db-1", DB.labels)
    procs = [Proc("web", "web"), Proc("app", "app")]
    assert c.visible(BOB, "web-1", WEB.labels, procs, lambda p: (p.group, p.name)) == procs[:1]
    with pytest.raises(PermissionDenied, match="may not read web-1:app"):
        c.read_process(BOB, WEB, "app")


def test_refusal_audit_keeps_a_burst_per_identity_per_window_and_counts_the_rest(caplog):
    now = [0.0]
    refusals = Refusals(None, "/p/", "ctl", burst=3, window=60, clock=lambda: now[0])  # type: ignore[arg-type]
    assert [refusals.admit("agent web-2") for _ in range(5)] == [True, True, True, False, False]
    assert refusals.admit("bob")
    now[0] = 61
    with caplog.at_level(logging.WARNING, "fleetvisor.controller"):
        assert refusals.admit("agent web-2")
    assert "dropped 2 audit entries of refusals of agent web-2" in caplog.text
