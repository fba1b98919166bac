"""The test driver's hands inside the driver namespace: gRPC calls to controllers and agents.

The pytest process lives in the root network namespace, which by the multi-host safety rules
has no address in the test subnet and cannot reach any test host. So it starts this script
with `ip netns exec <driver> ...` and talks to it over stdin/stdout, one JSON object per line:

    probe.py [--tls-cert F --tls-key F --tls-ca F]     mutual TLS with that certificate; else plaintext

    -> {"op": "status", "ctl": "10.231.120.11:7500"}
    <- {"ok": true, "result": {...}}          or {"ok": false, "code": "UNAVAILABLE", ...}

It also keeps the agents' WatchEvents streams open (`watch`, then `events`), so restarts are
judged from the agents' own event timestamps, as tests/controller/test_operations.py does.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

import grpc

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from fleetvisor.v1 import controller_pb2 as pb
from fleetvisor.v1 import controller_pb2_grpc as pb_grpc

# reconnect quickly after a link comes back, so a check sees the heal within its deadline
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500)]
CALL_TIMEOUT = 3.0

_channels: dict[str, grpc.Channel] = {}
_credentials: grpc.ChannelCredentials | None = None


def read_tls(argv: list[str]) -> grpc.ChannelCredentials | None:
    """fleetctl's three TLS flags, as `--tls-cert F --tls-key F --tls-ca F`."""
    if not argv:
        return None
    flags = dict(zip(argv[::2], argv[1::2], strict=True))
    files = [Path(flags[f"--tls-{k}"]).read_bytes() for k in ("ca", "key", "cert")]
    return grpc.ssl_channel_credentials(root_certificates=files[0], private_key=files[1], certificate_chain=files[2])


def channel(address: str) -> grpc.Channel:
    if address not in _channels:
        _channels[address] = (grpc.secure_channel(address, _credentials, CHANNEL_OPTIONS) if _credentials
                               else grpc.insecure_channel(address, CHANNEL_OPTIONS))
    return _channels[address]


def ctl(address: str) -> pb_grpc.ControllerServiceStub:
    return pb_grpc.ControllerServiceStub(channel(address))


def agent(address: str) -> apb_grpc.AgentServiceStub:
    return apb_grpc.AgentServiceStub(channel(address))


def process(p) -> dict:
    return {"namespec": p.namespec, "statename": p.statename, "pid": p.pid, "start": p.start}


def node_info(n) -> dict:
    return {"name": n.name, "address": n.address, "up": n.up, "reachable": n.reachable, "error": n.error,
            "applied_revision": n.applied_revision, "desired_revision": n.desired_revision,
            "started_at": n.started_at}


def operation(op) -> dict:
    return {"id": op.id, "state": pb.OperationState.Name(op.state), "current_batch": op.current_batch,
            "reason": op.reason, "controller_id": op.controller_id,
            "batches": [[{"node": s.node, "state": pb.NodeStepState.Name(s.state), "error": s.error,
                          "started_at": s.started_at, "healthy_at": s.healthy_at, "done_at": s.done_at}
                         for s in b.nodes] for b in op.batches]}


class EventLog:
    """Every process state change of every watched agent, stamped by the agent itself."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, str, int]] = []  # (time, node, namespec, state, pid)
        self.snapshots: dict[str, int] = {}   # node -> snapshots received (one per stream start)
        self.errors: dict[str, str] = {}
        self.lock = threading.Lock()

    def watch(self, node: str, address: str) -> None:
        threading.Thread(target=self._read, args=(node, address), daemon=True).start()

    def _read(self, node: str, address: str) -> None:
        try:
            for event in agent(address).WatchEvents(apb.WatchEventsRequest()):
                kind = event.WhichOneof("kind")
                with self.lock:
                    if kind == "snapshot":
                        self.snapshots[node] = self.snapshots.get(node, 0) + 1
                    elif kind == "process_state":
                        p = event.process_state.process
                        self.events.append((event.time, node, p.namespec, p.statename, p.pid))
        except grpc.RpcError as exc:
            with self.lock:
                self.errors[node] = f"{exc.code().name}: {exc.details()}"

    def dump(self) -> dict:
        with self.lock:
            return {"events": sorted(self.events), "snapshots": dict(self.snapshots), "errors": dict(self.errors)}


LOG = EventLog()


def handle(req: dict):
    op = req["op"]
    t = req.get("timeout", CALL_TIMEOUT)
    if op == "status":
        reply = ctl(req["ctl"]).GetStatus(pb.StatusRequest(patterns=req.get("patterns", [])), timeout=t)
        return {"controller_id": reply.controller_id,
                "nodes": [{**node_info(n.node), "processes": [process(p) for p in n.processes]}
                          for n in reply.nodes]}
    if op == "nodes":
        return [node_info(n) for n in ctl(req["ctl"]).ListNodes(pb.ListNodesRequest(), timeout=t).nodes]
    if op == "leader":
        r = ctl(req["ctl"]).GetLeader(pb.GetLeaderRequest(), timeout=t)
        return {"leader_id": r.leader_id, "leader_address": r.leader_address, "controller_id": r.controller_id,
                "is_leader": r.is_leader, "asyncio_tasks": r.asyncio_tasks}
    if op == "push":
        r = ctl(req["ctl"]).PushConfig(pb.PushConfigRequest(
            name=req["name"], config_text=req["text"], message=req.get("message", "multihost"),
            assignment=pb.Assignment(nodes=req.get("nodes", []), labels=req.get("labels", {}))), timeout=15)
        return {"revision": r.revision.revision, "target_nodes": sorted(r.target_nodes), "unchanged": r.unchanged}
    if op == "config_status":
        r = ctl(req["ctl"]).ConfigStatus(pb.ConfigStatusRequest(), timeout=t)
        return {n.node: {"desired": n.desired_revision, "applied": n.applied_revision, "in_sync": n.in_sync,
                         "up": n.up, "last_error": n.last_error} for n in r.nodes}
    if op == "start_op":
        spec = pb.OperationSpec(kind=pb.ROLLING_RESTART, group=req["group"], batch=req.get("batch", 1),
                                healthy_for_seconds=req.get("healthy_for", 1.0),
                                timeout_seconds=req.get("op_timeout", 30.0), on_failure=pb.PAUSE)
        return operation(ctl(req["ctl"]).StartOperation(pb.StartOperationRequest(spec=spec, message="multihost"),
                                                         timeout=15))
    if op == "get_op":
        return operation(ctl(req["ctl"]).GetOperation(pb.GetOperationRequest(id=req["id"]), timeout=t))
    if op in ("resume_op", "abort_op"):
        call = ctl(req["ctl"]).ResumeOperation if op == "resume_op" else ctl(req["ctl"]).AbortOperation
        return operation(call(pb.GetOperationRequest(id=req["id"]), timeout=t))
    if op == "etcd_status":  # etcd's JSON gateway: {"dbSize": "...", "dbSizeInUse": "...", "header": {...}}
        request = urllib.request.Request(f"http://{req['etcd']}/v3/maintenance/status", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=t) as answer:
            return json.load(answer)
    if op == "agent_procs":
        r = agent(req["addr"]).ListProcesses(apb.ListProcessesRequest(), timeout=t)
        return [process(p) for p in r.processes]
    if op == "watch":
        for node, address in req["agents"].items():
            LOG.watch(node, address)
        return True
    if op == "events":
        return LOG.dump()
    if op == "ping":
        return True
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    global _credentials
    _credentials = read_tls(sys.argv[1:])
    out = sys.stdout
    out.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        started = time.monotonic()
        try:
            answer = {"ok": True, "result": handle(json.loads(line))}
        except grpc.RpcError as exc:
            metadata = dict(exc.trailing_metadata() or ())
            answer = {"ok": False, "code": exc.code().name, "details": exc.details(),
                      "leader": metadata.get("fleetvisor-leader", "")}
        except Exception as exc:  # a bug in the probe: say so rather than die silently
            answer = {"ok": False, "code": "PROBE_ERROR", "details": f"{exc!r}\n{traceback.format_exc()}"}
        answer["seconds"] = round(time.monotonic() - started, 3)
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
