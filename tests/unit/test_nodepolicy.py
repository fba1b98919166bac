"""The pure rules of issue 14 parts 2 and 4: when a node is foreign, when the leader pushes,
when an agent refuses a per-node apply, which per-node start/stop names touch fleet programs."""

from __future__ import annotations

import pytest

from fleetvisor.agent.fleetconfig import Applied, apply_refusal, control_refusal
from fleetvisor.cli.managed import fleet_programs_named
from fleetvisor.controller.nodepolicy import Action, NodeFacts, decide, foreign_reason, parts
from fleetvisor.controller.records import OverrideRecord

OURS = "a" * 32
OTHER = "b" * 32
STORE = {("web", 1), ("web", 2), ("db", 7)}


def missing(name: str, rev: int) -> str:
    if (name, rev) in STORE:
        return ""
    if not any(n == name for n, _ in STORE):
        return f"no config {name}"
    return f"config {name} has no revision {rev}"


def foreign(facts: NodeFacts, override: OverrideRecord = OverrideRecord()) -> str:
    return foreign_reason(OURS, facts, missing, override)


def test_revision_ids_parse_into_parts():
    assert parts("") == [] and parts("none") == []
    assert parts("db@7,web@2") == [("db", 7), ("web", 2)]
    assert parts("local-abc123") is None and parts("web@x") is None and parts("@3") is None


def test_a_new_node_and_one_of_ours_are_not_foreign():
    assert foreign(NodeFacts()) == ""
    assert foreign(NodeFacts(applied="none", cluster_id=OURS)) == ""
    assert foreign(NodeFacts(applied="db@7,web@2", cluster_id=OURS)) == ""
    # an agent from before cluster identities, running one of this store's revisions
    assert foreign(NodeFacts(applied="web@1")) == ""


def test_another_clusters_node_is_foreign_whatever_it_runs():
    reason = foreign(NodeFacts(applied="web@1", cluster_id=OTHER))
    assert "another cluster" in reason and OTHER[:12] in reason and OURS[:12] in reason
    assert "another cluster" in foreign(NodeFacts(applied="", cluster_id=OTHER))


@pytest.mark.parametrize("applied, gap", [
    ("web@4", "config web has no revision 4"),
    ("api@1", "no config api"),
    ("db@7,api@1", "no config api"),
    ("local-1234", "local-1234 is not a revision of this store"),
])
def test_a_node_running_configs_this_store_does_not_know_is_foreign(applied, gap):
    for cluster in ("", OURS):
        reason = foreign(NodeFacts(applied=applied, cluster_id=cluster))
        assert reason == f"runs {applied}, which this store does not know ({gap})", reason


def test_drift_on_one_of_our_nodes_is_not_foreign_but_a_never_reconciled_local_revision_is():
    assert foreign(NodeFacts(applied="local-1234", cluster_id=OURS, local=True)) == ""
    assert foreign(NodeFacts(applied="local-1234", cluster_id="", local=True)) != ""


def test_adoption_holds_only_while_the_node_is_as_it_was_adopted():
    kept = OverrideRecord(adopted=True, adopted_from=OTHER, kept_revision="web@9", kept_desired="")
    assert foreign(NodeFacts(applied="web@9", cluster_id=OTHER), kept) == ""
    assert foreign(NodeFacts(applied="web@10", cluster_id=OTHER), kept) != ""  # changed since
    assert foreign(NodeFacts(applied="web@9", cluster_id="c" * 32), kept) != ""  # a third cluster
    replaced = OverrideRecord(adopted=True, adopted_from=OTHER)
    assert foreign(NodeFacts(applied="web@10", cluster_id=OTHER), replaced) == ""


def test_decide():
    plain = OverrideRecord()
    assert decide("web@2", NodeFacts("web@2", OURS), foreign="", override=plain, ours=OURS) is Action.NONE
    assert decide("", NodeFacts("none", OURS), foreign="", override=plain, ours=OURS) is Action.NONE
    assert decide("web@2", NodeFacts("web@1", OURS), foreign="", override=plain, ours=OURS) is Action.PUSH
    # never anything (above all not "none", which stops every fleet program) to a foreign node
    assert decide("", NodeFacts("web@4", OTHER), foreign="other cluster", override=plain, ours=OURS) is Action.FOREIGN
    # drift is reverted, even when its id is the desired one; a pin holds it
    assert decide("web@2", NodeFacts("local-1", OURS, True), foreign="", override=plain, ours=OURS) is Action.REVERT
    assert decide("web@2", NodeFacts("web@2", OURS, True), foreign="", override=plain, ours=OURS) is Action.REVERT
    pinned = OverrideRecord(pinned=True)
    assert decide("web@2", NodeFacts("local-1", OURS, True), foreign="", override=pinned, ours=OURS) is Action.PINNED
    assert decide("web@2", NodeFacts("web@1", OURS), foreign="", override=pinned, ours=OURS) is Action.PINNED
    # adopted with --keep: held until the desired revision changes
    kept = OverrideRecord(adopted=True, adopted_from=OTHER, kept_revision="web@9", kept_desired="")
    assert decide("", NodeFacts("web@9", OTHER), foreign="", override=kept, ours=OURS) is Action.KEPT
    assert decide("web@2", NodeFacts("web@9", OTHER), foreign="", override=kept, ours=OURS) is Action.PUSH
    # another store's web@9 is not this store's web@9: an adopted node gets this one's text
    assert decide("web@9", NodeFacts("web@9", OTHER), foreign="", override=kept, ours=OURS) is Action.PUSH


def test_agent_refuses_an_unforced_per_node_apply_only_on_a_managed_node():
    ctl = ["127.0.0.1:7400"]
    line = apply_refusal("web-1", ctl, cluster_id="", force=False, dry_run=False, role="")
    assert "managed by controller 127.0.0.1:7400" in line and "revert" in line
    assert "fleetctl nodes pin web-1" in line and "--force" in line and "\n" not in line
    assert apply_refusal("web-1", [], cluster_id="", force=False, dry_run=False, role="") == ""
    assert apply_refusal("web-1", ctl, cluster_id="", force=True, dry_run=False, role="operator") == ""
    assert apply_refusal("web-1", ctl, cluster_id="", force=False, dry_run=True, role="") == ""
    assert apply_refusal("web-1", ctl, cluster_id=OURS, force=False, dry_run=False, role="controller") == ""
    assert apply_refusal("web-1", ctl, cluster_id=OURS, force=False, dry_run=False, role="") == ""
    # a controller's certificate is enough: one from before cluster identities sends none
    assert apply_refusal("web-1", ctl, cluster_id="", force=False, dry_run=False, role="controller") == ""
    assert apply_refusal("web-1", ctl, cluster_id="", force=False, dry_run=False, role="operator") != ""
    # under TLS only a controller's certificate may carry a cluster identity
    assert "only a controller" in apply_refusal("web-1", ctl, cluster_id=OURS, force=True, dry_run=False,
                                                role="operator")


def test_fleet_sections_and_the_names_that_touch_them():
    applied = Applied("web@1", "[program:app]\ncommand=x\n\n[group:pool]\nprograms=a,b\n[eventlistener:ev]\n", 0)
    assert applied.sections() == ["app", "ev", "pool"]
    assert fleet_programs_named(["app", "local", "pool:a", "ev:*"], applied.sections()) == ["app", "pool:a", "ev:*"]
    assert fleet_programs_named(["all"], ["app"]) == ["all"]
    assert fleet_programs_named(["all", "app"], []) == []


def test_the_controller_state_dir_is_one_path_whoever_runs_it(monkeypatch, tmp_path):
    from fleetvisor.controller import main as controller_main
    seen = set()
    for uid in (0, 1000):
        monkeypatch.setattr(controller_main.os, "getuid", lambda uid=uid: uid)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / f"xdg-{uid}"))
        seen.add(controller_main.default_state_dir())
        assert controller_main.parse_args([]).state_dir is None
    assert seen == {"/var/lib/fleetvisor-controller"}
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(controller_main.StartupError) as raised:
        controller_main.check_state_dir(blocked / "state")
    assert "pass --state-dir DIR" in str(raised.value) and "\n" not in str(raised.value)
    controller_main.check_state_dir(tmp_path / "fine")
    assert (tmp_path / "fine").is_dir()


def test_keeping_a_node_that_runs_nothing():
    kept = OverrideRecord(adopted=True, adopted_from=OTHER, kept_revision="none", kept_desired="")
    assert foreign(NodeFacts(applied="", cluster_id=OTHER), kept) == ""
    assert decide("web@2", NodeFacts("", OTHER), foreign="", override=kept, ours=OURS) is Action.PUSH


def test_agent_refuses_a_per_node_start_or_stop_of_fleet_programs_only_on_a_managed_node():
    ctl = ["127.0.0.1:7400"]
    line = control_refusal("web-1", ctl, "stop", ["worker"], cluster_id="", force=False, role="")
    assert "stop of fleet program worker" in line and "fleetctl stop web-1:worker:*" in line
    assert "fleetctl nodes pin web-1" in line and "\n" not in line
    assert control_refusal("web-1", ctl, "stop", [], cluster_id="", force=False, role="") == ""  # local programs
    assert control_refusal("web-1", [], "stop", ["worker"], cluster_id="", force=False, role="") == ""
    assert control_refusal("web-1", ctl, "stop", ["worker"], cluster_id="", force=True, role="") == ""
    assert control_refusal("web-1", ctl, "stop", ["worker"], cluster_id=OURS, force=False, role="") == ""
    assert control_refusal("web-1", ctl, "start", ["worker"], cluster_id="", force=False, role="controller") == ""
