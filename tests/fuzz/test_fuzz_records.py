"""The controller's decoding of every etcd record: random bytes, truncated or corrupt JSON,
old formats and fields of the wrong type.

Decoding returns a record whose fields have their declared types, or raises the module's own
error naming the key (records.CorruptRecord, opmodel's the same, PolicyError for acl/) - never
an arbitrary exception, and never a record that trips its reader later. The readers built on
them (current configs, desired revisions, policies, the leader key) carry on without the value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any, get_type_hints

import grpc
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetvisor.agent.security.policy import Policy, PolicyError
from fleetvisor.controller import acl, configs, opmodel, records, unreadable
from fleetvisor.controller.errors import CorruptRecord
from fleetvisor.controller.leadership import Leadership
from fleetvisor.controller.records import (
    AssignmentRecord,
    AuditRecord,
    ClusterRecord,
    MemberRecord,
    NodeRecord,
    OverrideRecord,
    ReconcileRecord,
    RevisionRecord,
    RevocationRecord,
)
from fleetvisor.v1 import controller_pb2 as cpb
from tests.controller.etcd_harness import EtcdServer
from tests.controller.fleet_harness import CLUSTER, Agent, Controller, states, wait_status
from tests.support import wait_for

from .fleet_strategies import budget

RECORDS = {records.MEMBERS + "web-1": MemberRecord, records.NODES + "web-1": NodeRecord,
           records.revision_key("app", 3): RevisionRecord, records.assignment_key("app"): AssignmentRecord,
           records.reconcile_key("web-1"): ReconcileRecord, records.audit_key(1.0): AuditRecord,
           records.revoked_key("4a3f"): RevocationRecord, records.CLUSTER_ID: ClusterRecord,
           records.override_key("web-1"): OverrideRecord}

# -- values --------------------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([1 << 64, -(1 << 63) - 1, 10 ** 400]),
                    st.floats(), st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                    max_leaves=8)
GOOD = {  # a valid value of each record, as the current controller writes it
    MemberRecord: MemberRecord("web-1", "127.0.0.1:1", {"role": "web"}, "1.0", 1.0, "r", "app@1", False, 1.0),
    NodeRecord: NodeRecord(7, 1.0, "ctl-1"),
    RevisionRecord: RevisionRecord("[program:a]\ncommand=sleep 1\n", "op", "m", 1.0, "ab",
                                   {"nodes": ["web-1"], "labels": {"role": "web"}}, 0),
    AssignmentRecord: AssignmentRecord(3, {"nodes": ["web-1"], "labels": {}}, 1.0,
                                       {"op": "op-1", "previous": 2, "done": ["web-1"]}, {"2": "aborted"}),
    ReconcileRecord: ReconcileRecord("app@3", "app@2", "boom", 1, 1.0),
    AuditRecord: AuditRecord(1.0, "alice", "config.push", "{}", True, "ok", "ctl-1"),
    RevocationRecord: RevocationRecord("4a3f", "alice", "admin", 1.0),
    ClusterRecord: ClusterRecord("abc", 1.0, "ctl-1"),
    OverrideRecord: OverrideRecord(pinned=True, pinned_by="alice", kept_revision="app@1"),
}


def mutated(data: Any) -> st.SearchStrategy[Any]:
    """`data` (JSON) with one value somewhere replaced by random JSON, or one key dropped: the
    wrong types and old formats a record meets."""
    paths = list(_paths(data, ()))
    return st.sampled_from(paths).flatmap(
        lambda path: st.one_of(JSON.map(lambda new: _replace(data, path, new)),
                               st.just(_replace(data, path, _DROP)) if path else st.just(data)))


_DROP = object()


def _paths(data: Any, here: tuple) -> Any:
    yield here
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*here, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, (*here, i))


def _replace(data: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(data, dict):
        copy = dict(data)
        if not rest and new is _DROP:
            copy.pop(head)
        else:
            copy[head] = _replace(data[head], rest, new)
        return copy
    copy = list(data)
    if not rest and new is _DROP:
        copy.pop(head)
    else:
        copy[head] = _replace(data[head], rest, new)
    return copy


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


def raw_values(good: Any) -> st.SearchStrategy[bytes]:
    """Bytes for a key whose valid value is the JSON `good`: its mutations, cut short, bit-flipped,
    random bytes, invalid UTF-8, and random JSON."""
    encoded = _json(good)
    return st.one_of(
        mutated(good).map(_json),
        st.integers(0, len(encoded)).map(lambda n: encoded[:n]),
        st.tuples(st.integers(0, len(encoded) - 1), st.integers(1, 255)).map(
            lambda f: encoded[:f[0]] + bytes([encoded[f[0]] ^ f[1]]) + encoded[f[0] + 1:]),
        st.binary(max_size=40), st.sampled_from([b"\xff", b'{"name": "\xff"}', b"", b"null", b"[]", b"1", b'"x"']),
        JSON.map(_json))


def typed(record: object) -> None:
    """Every field of `record` has its declared type, and its own checks pass."""
    hints = get_type_hints(type(record))
    for f in fields(record):  # type: ignore[arg-type]
        assert records.fits(getattr(record, f.name), hints[f.name]), (f.name, getattr(record, f.name))
    if hasattr(record, "check"):
        record.check()


# -- records.py ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", list(RECORDS), ids=lambda k: k.split("/")[0])
def test_records_decode_or_name_the_key(key):
    cls = RECORDS[key]

    @settings(max_examples=budget(150))
    @given(raw_values(asdict(GOOD[cls])))
    @example(b"[]")  # a JSON list: was an AttributeError
    @example(b"7")
    @example(b"\xff\xfe")  # not UTF-8
    def check(raw):
        try:
            record = records.load(cls, key, raw)
        except CorruptRecord as exc:
            assert str(exc).startswith(f"{key}: ") and "\n" not in str(exc)
            assert records.decode(cls, raw) is None
            return
        assert isinstance(record, cls)
        typed(record)
        assert records.decode(cls, raw) == record
    check()


def test_each_record_reads_back_as_written():
    for key, cls in RECORDS.items():
        assert records.load(cls, key, records.encode(GOOD[cls])) == GOOD[cls]


def test_a_field_of_the_wrong_type_is_unreadable_not_a_later_crash():
    """Regression: a member whose labels were a list decoded, then broke every status call."""
    bad = {**asdict(GOOD[MemberRecord]), "labels": ["role", "web"]}
    with pytest.raises(CorruptRecord, match=r"^members/web-1: field labels is not an object of strings$"):
        records.load(MemberRecord, "members/web-1", _json(bad))
    broken_rollout = {**asdict(GOOD[AssignmentRecord]), "rollout": {"op": "x"}}
    with pytest.raises(CorruptRecord, match=r"^assignments/app: the rollout is"):
        records.load(AssignmentRecord, "assignments/app", _json(broken_rollout))
    assert records.decode(NodeRecord, _json({"lease": 1 << 64, "last_heartbeat": 1.0})) is None


# -- opmodel.py ------------------------------------------------------------------------------------

OPERATION = opmodel.Operation(
    "op-1", opmodel.Spec(kind=opmodel.Kind.CONFIG_ROLLOUT, selector=records.Selector(("web-1",), {"a": "b"}),
                         batch=1, config_name="app", config_revision=3, previous_revision=2),
    batches=[opmodel.Batch([opmodel.Step("web-1", opmodel.StepState.DONE, pids_before=[12])]),
             opmodel.Batch([opmodel.Step("web-2")])], author="alice", created_at=1.0)
OLD_OPERATION = {"id": "op-0", "spec": {"kind": "ROLLING_RESTART", "group": "app", "configRevision": "3",
                                        "selector": {"nodes": ["web-1"]}},
                 "state": "OP_PAUSED", "batches": [{"nodes": [{"node": "web-1", "pidsBefore": [4]}]}]}


@settings(max_examples=budget(300))
@given(st.one_of(raw_values(json.loads(opmodel.encode(OPERATION))), raw_values(OLD_OPERATION)))
@example(_json({**OLD_OPERATION, "spec": []}))  # was an AttributeError
@example(_json({**OLD_OPERATION, "batch": 1e400, "spec": {"batch": 1e400}}))  # was an OverflowError
@example(_json({"version": 1, "id": "x", "spec": {}, "batches": [{"nodes": [{"node": 5}]}]}))
def test_operations_decode_or_name_the_key(raw):
    key = records.op_key("op-1")
    try:
        op = opmodel.decode(raw, key)
    except CorruptRecord as exc:
        assert str(exc).startswith(f"{key}: ")
        return
    assert isinstance(op.spec.selector, records.Selector) and isinstance(op.id, str)
    for step in op.steps():
        assert isinstance(step.node, str) and all(isinstance(p, int) for p in step.pids_before)
    assert opmodel.decode(opmodel.encode(op), key) == op


# -- acl.py, the leader key, unreadable.py ------------------------------------------------------------

POLICY = json.loads(Policy.from_json(json.dumps({"name": "ops", "verbs": ["read"], "subjects": {"users": ["bob"]},
                                                 "scope": {"labels": {"a": "b"}}})).to_json())


@settings(max_examples=budget(200))
@given(raw_values(POLICY))
@example(_json({**POLICY, "version": "2"}))  # was a TypeError comparing it with the release's version
@example(_json({**POLICY, "version": None}))
def test_policies_parse_or_are_refused_with_a_reason(raw):
    try:
        policy = Policy.from_json(raw)
    except PolicyError as exc:
        assert str(exc)
    else:
        assert Policy.from_json(policy.to_json()) == policy
    bad: set[str] = set()
    acl.parse({"acl/ops": raw, "revoked/4a3f": raw}, bad)  # skips what it cannot read, never raises


@settings(max_examples=budget(100))
@given(raw_values({"id": "ctl-1", "address": "127.0.0.1:1"}))
@example(b"[]")  # was an AttributeError on every GetLeader
def test_the_leader_key_reads_as_a_holder_or_none(raw):
    class Election:
        leader = raw
        is_leader = False

        def on_change(self, _: object) -> None:
            pass
    lead = Leadership(Election(), lambda: None)  # type: ignore[arg-type]
    assert isinstance(lead.leader_id, str) and isinstance(lead.leader_address, str)


KEYS = st.one_of(st.sampled_from([*RECORDS, records.op_key("op-1"), records.LEADER, "configs/app/revs/x",
                                  "configs/app/revs/", "configs/app", "members/", "acl/x", "unknown/x"]),
                 st.text(max_size=20))


@settings(max_examples=budget(200))
@given(KEYS, st.one_of(st.binary(max_size=30), JSON.map(_json)))
def test_unreadable_names_the_key_or_reads_it(key, raw):
    why = unreadable.problem(key, raw)
    assert why is None or why.startswith(f"{key}: ")


@settings(max_examples=budget(150))
@given(raw_values(asdict(GOOD[AssignmentRecord])), raw_values(asdict(GOOD[RevisionRecord])),
       st.sampled_from(["configs/app/revs/0000000003", "configs/app/revs/junk", "configs/app/revs/²"]))
@example(records.encode(GOOD[AssignmentRecord]), records.encode(GOOD[RevisionRecord]), "configs/app/revs/junk")
def test_current_configs_skip_what_they_cannot_read(assignment, revision, revision_key):
    """Regression: a key under configs/app/revs/ that is no number broke the config history."""
    entries = {"assignments/app": assignment, revision_key: revision,
               "configs/app/revs/0000000002": records.encode(GOOD[RevisionRecord])}
    current = configs.current_configs(entries)
    for member in (GOOD[MemberRecord], MemberRecord("web-2", "x")):
        configs.desired_for(member, current.values())
    assert all(isinstance(n, int) for n in configs.revisions_of(entries, "app"))


# -- a real controller reading corrupt keys through its etcd mirror -----------------------------------

CORRUPT = {  # one unreadable value under every prefix a controller follows
    "members/ghost": b"[]", "nodes/ghost": b"not json", "configs/app/revs/0000000001": b'{"text": 5}',
    "configs/app/revs/junk": records.encode(GOOD[RevisionRecord]), "assignments/app": b'{"revision": "1"}',
    "reconcile/web-1": b"\xff\xfe", "audit/00000000000000001-deadbeef": b"{}", "ops/bad": b'{"version": 99}',
    "overrides/web-1": b'{"pinned": "yes"}', "acl/bad": b"nope", "revoked/abc": b"nope",
}


def test_a_controller_reading_corrupt_keys_names_each_once_and_keeps_serving(tmp_path):
    etcd = EtcdServer(tmp_path)
    etcd.start()
    ctl = agent = None
    try:
        ctl = Controller(tmp_path, etcd.endpoint)
        agent = Agent(tmp_path, "web-1", [ctl.address], labels="role=web")
        wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING", what="web-1 running")
        prefix = records.prefix_of(CLUSTER)
        for key, value in CORRUPT.items():
            etcd.put((prefix + key).encode(), value)
        for key in CORRUPT:
            wait_for(lambda key=key: any(key in line for line in ctl.log().splitlines()), 10, f"a line naming {key}")
        stub = ctl.stub
        status = wait_status(ctl, lambda s: states(s).get("web-1:app") == "RUNNING", what="status still served")
        assert [n.node.name for n in status.nodes] == ["web-1"]
        assert [n.name for n in stub.ListNodes(cpb.ListNodesRequest(), timeout=5).nodes] == ["web-1"]
        assert not stub.ListConfigs(cpb.ListConfigsRequest(), timeout=5).configs
        assert not stub.ListOperations(cpb.ListOperationsRequest(all=True), timeout=5).operations
        assert not stub.ListPolicies(cpb.ListPoliciesRequest(), timeout=5).policies
        stub.ListAudit(cpb.ListAuditRequest(), timeout=5)
        stub.ConfigStatus(cpb.ConfigStatusRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetOperation(cpb.GetOperationRequest(id="bad"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and info.value.details().startswith("ops/bad: ")
        lines = ctl.log().splitlines()
        for key in CORRUPT:
            # (the leader may rewrite its own reconcile/ or overrides/ record meanwhile: "readable again")
            assert len([line for line in lines if key in line and "readable again" not in line]) == 1, key
        assert "Traceback" not in ctl.log()
    finally:
        if agent is not None:
            agent.stop()
        if ctl is not None:
            ctl.stop()
        etcd.kill()
