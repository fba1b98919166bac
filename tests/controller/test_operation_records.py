"""Operation records across controller versions: one stored in the old format (protobuf JSON) is
served and changed by this controller, which writes it back in its versioned format."""

from __future__ import annotations

import json

import grpc
import pytest
from aetcd import rpc
from google.protobuf import json_format

from fleetvisor.v1 import controller_pb2 as pb

from tests.integration.harness import wait_for

# As controllers stored a paused rolling restart before records had a version
OLD_RECORD = (
    b'{"id": "20260101-120000-abcdef", "spec": {"kind": "ROLLING_RESTART", "group": "web", "selector": {},'
    b' "batch": 1, "healthyForSeconds": 5.0, "timeoutSeconds": 300.0, "onFailure": "PAUSE"}, "state": "OP_PAUSED",'
    b' "batches": [{"nodes": [{"node": "n1", "state": "STEP_DONE", "startedAt": 1.5, "healthyAt": 2.5,'
    b' "doneAt": 3.5, "pidsBefore": [11, 12]}]}, {"nodes": [{"node": "n2", "state": "STEP_FAILED", "error":'
    b' "restart failed: boom", "doneAt": 4.0}]}, {"nodes": [{"node": "n3", "state": "STEP_PENDING"}]}],'
    b' "currentBatch": 1, "reason": "n2: restart failed: boom", "author": "alice@host (unverified)",'
    b' "message": "rolling", "createdAt": 1767268800.5, "updatedAt": 1767268900.25, "controllerId": "ctl-0"}')
OP_ID = "20260101-120000-abcdef"
KEY = f"/fleetvisor/test/ops/{OP_ID}".encode()


def test_an_operation_stored_in_the_old_format_is_served_and_rewritten(fleet):
    fleet.etcd.put(KEY, OLD_RECORD)
    # one that a later controller wrote in a format this one must not guess at
    fleet.etcd.put(b"/fleetvisor/test/ops/zz-later", b'{"version": 99, "id": "zz-later", "state": "OP_RUNNING"}')
    ctl = fleet.controller()
    wait_for(ctl.is_leader, 10, "a leader")
    request = pb.GetOperationRequest(id=OP_ID)
    assert ctl.stub.GetOperation(request, timeout=5) == json_format.Parse(OLD_RECORD, pb.Operation())
    listed = ctl.stub.ListOperations(pb.ListOperationsRequest(all=True), timeout=5).operations
    assert [op.id for op in listed] == [OP_ID]
    with pytest.raises(grpc.RpcError) as info:
        ctl.stub.GetOperation(pb.GetOperationRequest(id="zz-later"), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "newer controller" in info.value.details()

    aborted = ctl.stub.AbortOperation(pb.GetOperationRequest(id=OP_ID, reason="migrated"), timeout=10)
    assert aborted.state == pb.OP_ABORTED and aborted.controller_id == "ctl-1"
    assert [s.state for b in aborted.batches for s in b.nodes] == [pb.STEP_DONE, pb.STEP_FAILED, pb.STEP_SKIPPED]
    assert list(aborted.batches[0].nodes[0].pids_before) == [11, 12]

    stored = fleet.etcd._call("Range", rpc.RangeRequest(key=KEY)).kvs[0].value
    assert json.loads(stored)["version"] == 1
    # what this controller wrote, a controller that reads protobuf JSON reads alike
    assert json_format.Parse(stored, pb.Operation(), ignore_unknown_fields=True) == aborted
    assert ctl.stub.GetOperation(request, timeout=5) == aborted
