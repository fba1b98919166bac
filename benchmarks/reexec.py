"""An in-place upgrade under load (issue 19): a re-exec of an agent running N programs, W of
which write numbered lines to stdout as fast as they can.

Measured, from the moment `fleetvisor.reexec` is called:
- the longest an XML-RPC client waited for an answer (calls made back to back, each on a new
  connection, throughout the re-exec; target < 2 s), and how many were refused (must be 0);
  the same for a gRPC client (GetInfo on a new channel each time: refused means UNAVAILABLE);
- the checks before the handover (mostly the new agent's dry run), then the time from the
  handover until every process is adopted (the new agent's "took over" main-log line);
- what the writers' logs lost or repeated (every number must be there once: target 0).
`targets_met` in the JSON says whether every target was met.

    .venv/bin/python -m benchmarks.reexec                          # 1000 programs, 10 writers
    .venv/bin/python -m benchmarks.reexec --programs 100 --writers 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path

import grpc
from supervisor.xmlrpc import SupervisorTransport

from fleetvisor.v1 import agent_pb2 as apb
from fleetvisor.v1 import agent_pb2_grpc as apb_grpc
from tests.support import free_port

RESULTS = Path(__file__).parent / "results" / "reexec.json"
WRITER = """import itertools, os
for batch in itertools.count():
    os.write(1, "".join(f"{n}\\n" for n in range(batch * 100, batch * 100 + 100)).encode())
"""


def config_text(directory: Path, programs: int, writers: int, grpc_port: int) -> str:
    return f"""
[fleetvisor]
node=bench
grpc_listen=127.0.0.1:{grpc_port}
state_dir={directory}/state

[unix_http_server]
file={directory}/agent.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisord]
logfile={directory}/main.log
pidfile={directory}/agent.pid
childlogdir={directory}
minfds=8192

[program:writer]
command={sys.executable} {directory}/writer.py
process_name=writer_%(process_num)03d
numprocs={writers}
stdout_logfile={directory}/writer_%(process_num)03d.log
stdout_logfile_maxbytes=0
startsecs=0

[program:sleeper]
command=sleep 100200
process_name=sleeper_%(process_num)04d
numprocs={programs - writers}
startsecs=0
stdout_logfile=NONE
stderr_logfile=NONE
"""


def rpc(sock: Path) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{sock}"))


class Caller(threading.Thread):
    """`call` back to back, a new connection each: (start, end, ok) of every call, and how many
    were refused (`refused` tells a refusal from another failure)."""

    def __init__(self, call: Callable[[], object], refused: Callable[[Exception], bool]) -> None:
        super().__init__(daemon=True)
        self.call = call
        self.is_refusal = refused
        self.calls: list[tuple[float, float, bool]] = []
        self.refused = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            start = time.time()
            try:
                self.call()
                self.calls.append((start, time.time(), True))
            except Exception as exc:  # every failure is counted, one way or the other
                if self.is_refusal(exc):
                    self.refused += 1
                else:
                    self.calls.append((start, time.time(), False))

    def during(self, since: float) -> dict[str, object]:
        calls = [c for c in self.calls if c[1] >= since]
        return {"longest_wait_s": round(max(end - start for start, end, _ in calls), 3), "refused": self.refused,
                "failed_calls": sum(1 for *_, ok in calls if not ok)}


def xmlrpc_caller(sock: Path) -> Caller:
    return Caller(lambda: rpc(sock).supervisor.getState(), lambda exc: isinstance(exc, ConnectionRefusedError))


def grpc_info(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        apb_grpc.AgentServiceStub(channel).GetInfo(apb.GetInfoRequest(), timeout=30)


def grpc_caller(address: str) -> Caller:
    return Caller(lambda: grpc_info(address),
                  lambda exc: isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.UNAVAILABLE)


def line_time(log: Path, needle: str, deadline: float) -> tuple[float, str]:
    """The wall time stamped on the first main-log line containing `needle`, and the line."""
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if needle in line:
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                return stamp.timestamp(), line[24:]
        time.sleep(0.02)
    raise SystemExit(f"no line with {needle!r} in {log}")


def check_numbers(path: Path) -> tuple[int, int]:
    """(missing, repeated) numbers in a writer's log."""
    numbers = [int(n) for n in path.read_text().split()]
    seen = set(numbers)
    missing = (max(numbers) + 1 - len(seen)) if numbers else 0
    return missing, len(numbers) - len(seen)


def measure(programs: int, writers: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="reexec-bench-") as tmp:
        directory = Path(tmp)
        (directory / "writer.py").write_text(WRITER)
        conf = directory / "supervisord.conf"
        grpc_address = f"127.0.0.1:{(grpc_port := free_port())}"
        conf.write_text(config_text(directory, programs, writers, grpc_port))
        sock = directory / "agent.sock"
        agent = subprocess.Popen([sys.executable, "-m", "fleetvisor.agent", "-c", str(conf), "-n", "-s"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    infos = rpc(sock).supervisor.getAllProcessInfo()
                    if len(infos) == programs and all(i["statename"] == "RUNNING" for i in infos):
                        break
                except (OSError, xmlrpc.client.Error):
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the programs did not all start within 300 s")
                time.sleep(0.1)
            before = {i["name"]: i["pid"] for i in infos}
            callers = {"xmlrpc": xmlrpc_caller(sock), "grpc": grpc_caller(grpc_address)}
            for caller in callers.values():
                caller.start()
            time.sleep(1.0)  # calls answered before, as a baseline
            t0 = time.time()
            assert rpc(sock).fleetvisor.reexec() is True
            answered_at = time.time()  # after the checks (the new agent's dry run): the handover begins
            handing_at, _ = line_time(directory / "main.log", "re-exec: handing", time.monotonic() + 120)
            adopted_at, adopted_line = line_time(directory / "main.log", "re-exec: took over", time.monotonic() + 120)
            time.sleep(2.0)  # calls answered after
            for caller in callers.values():
                caller.done.set()
                caller.join(30)
            after = {i["name"]: i["pid"] for i in rpc(sock).supervisor.getAllProcessInfo()}
            rpc(sock).supervisor.stopProcessGroup("writer")
            lost = [check_numbers(directory / f"writer_{n:03d}.log") for n in range(writers)]
            return {
                "programs": programs, "writers": writers,
                **callers["xmlrpc"].during(t0),
                **{f"grpc_{key}": value for key, value in callers["grpc"].during(t0).items()},
                "checks_s": round(answered_at - t0, 3),
                "adopted_after_handover_s": round(adopted_at - handing_at, 3),
                "new_agent_says": adopted_line,
                "pids_unchanged": before == after,
                "missing_lines": sum(m for m, _ in lost), "repeated_lines": sum(r for _, r in lost),
                "writer_bytes": sum((directory / f"writer_{n:03d}.log").stat().st_size for n in range(writers)),
            }
        finally:
            try:
                rpc(sock).supervisor.shutdown()
                agent.wait(120)
            except (OSError, xmlrpc.client.Error, subprocess.TimeoutExpired):
                agent.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})")
    args = parser.parse_args(argv)
    result = measure(args.programs, args.writers)
    result["targets_met"] = (result["longest_wait_s"] < 2.0 and result["refused"] == 0 and result["pids_unchanged"]
                             and result["grpc_longest_wait_s"] < 2.0 and result["grpc_refused"] == 0
                             and result["grpc_failed_calls"] == 0
                             and result["missing_lines"] == 0 and result["repeated_lines"] == 0)
    print(json.dumps(result, indent=2))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
