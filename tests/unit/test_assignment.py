"""The assignment of nodes to controllers (controller/assignment.py): every node has exactly
one owner among the live controllers, shares are about even, and a controller leaving or
joining moves only the nodes it must."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetvisor.controller.assignment import Assigner, assign, owner, shares

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=20)
node_sets = st.sets(names, min_size=1, max_size=200)
controller_sets = st.sets(names, min_size=1, max_size=6)


@given(node_sets, controller_sets)
def test_every_node_has_one_live_owner(nodes, controllers):
    assignment = assign(nodes, controllers)
    assert set(assignment) == nodes
    assert set(assignment.values()) <= controllers
    assert sum(shares(assignment, controllers).values()) == len(nodes)


@given(node_sets, controller_sets)
def test_the_order_controllers_are_listed_in_does_not_matter(nodes, controllers):
    assert assign(nodes, sorted(controllers)) == assign(nodes, sorted(controllers, reverse=True))


@given(node_sets, controller_sets, names)
def test_a_leaving_controller_moves_only_its_own_nodes(nodes, controllers, gone):
    before = assign(nodes, controllers | {gone})
    after = assign(nodes, controllers - {gone})
    moved = {n for n in nodes if before[n] != after[n]}
    assert all(before[n] == gone for n in moved)
    if controllers - {gone}:
        assert all(after[n] != gone for n in nodes)


@given(node_sets, controller_sets, names)
def test_a_joining_controller_takes_nodes_from_others_and_nothing_else_moves(nodes, controllers, joiner):
    before = assign(nodes, controllers)
    after = assign(nodes, controllers | {joiner})
    assert all(after[n] == joiner for n in nodes if before[n] != after[n])


@given(controller_sets)
def test_one_controller_owns_everything(controllers):
    only = min(controllers)
    assert set(assign([f"node-{i}" for i in range(50)], [only]).values()) == {only}


def test_no_controller_means_no_owner():
    assert owner("web-1", []) == ""


@settings(max_examples=5)
@given(st.integers(min_value=2, max_value=5))
def test_shares_are_about_even(count):
    controllers = [f"ctl-{i}" for i in range(count)]
    nodes = [f"sim-{i:04d}" for i in range(3000)]
    fair = len(nodes) / count
    for share in shares(assign(nodes, controllers), controllers).values():
        assert abs(share - fair) < 0.15 * fair, (share, fair)


def test_the_assignment_is_stable_across_releases():
    """Every controller must agree, also in a rolling upgrade: the hash is fixed (BLAKE2b of the
    pair), not Python's per-process hash(). A change of these values breaks mixed fleets."""
    assert assign([f"sim-{i:04d}" for i in range(1, 7)], ["ctl-3", "ctl-1", "ctl-2"]) == {
        "sim-0001": "ctl-3", "sim-0002": "ctl-1", "sim-0003": "ctl-3", "sim-0004": "ctl-3", "sim-0005": "ctl-3",
        "sim-0006": "ctl-3"}


@given(st.lists(st.tuples(node_sets, controller_sets), min_size=1, max_size=5))
def test_the_kept_assignment_is_always_the_fresh_one(steps):
    assigner = Assigner()
    for nodes, controllers in steps:
        assert assigner.update(nodes, controllers) == assign(nodes, controllers)
