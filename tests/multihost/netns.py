"""Test hosts as Linux network namespaces on a bridge that lives in a namespace of its own.

Safety rules (DESIGN.md, "Tests use real parts"), and how this module keeps them:

- Every test host, the driver included, is a namespace named `fvmh<PID>-<host>`, where PID is
  the pytest process that made it. The bridge is `br0` inside `fvmh<PID>-br`. Veth pairs are
  created from inside the bridge namespace straight into the host namespace
  (`ip -n BR link add v-HOST type veth peer name eth0 netns HOST`), so no link ever exists
  in the root namespace, and deleting a namespace deletes its links.
- The test subnet is 10.231.N.0/24, N chosen so that no route or address of the root
  namespace overlaps it. The root namespace gets no address in it and a blackhole route for
  it, tagged `proto 231 metric <PID>` so that a leftover one can be told apart and removed.
- Processes start with `ip netns exec NS ...` (ip execs in place, so the Popen pid is the
  program's), in their own process group, with a parent-death signal. At the end every
  process still in one of our namespaces (`ip netns pids`, which also finds orphaned
  grandchildren such as the programs of a SIGKILLed agent) is SIGKILLed, then the
  namespaces and the route are removed; this runs in `finally`, also on failure.
- At the start, namespaces and routes left by an earlier run whose PID is gone are removed.
"""

from __future__ import annotations

import atexit
import ipaddress
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fleetvisor.controller.embedded import die_with_parent

from tests import support
from tests.support import pid_alive

IP = "/usr/sbin/ip"
PREFIX = "fvmh"
ROUTE_PROTO = "231"
REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
NAME = re.compile(rf"^{PREFIX}(\d+)-")
T = TypeVar("T")


class NetnsUnavailable(Exception):
    """Namespaces cannot be made here (not root, or `ip netns add` fails)."""


def ip(*args: str, check: bool = True) -> str:
    result = subprocess.run([IP, *args], capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """The shared wait, checking less often: a condition here runs a process in a namespace."""
    return support.wait_for(condition, timeout, what, interval)


def netns_pids(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False)
    return [int(p) for p in out.split()]


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def is_zombie(pid: int) -> bool:
    """A zombie, or gone already: nothing left to kill."""
    return not pid_alive(pid)


def kill_netns_processes(ns: str) -> None:
    """SIGKILL every process in `ns` (there are only ours) until none is left."""
    for _ in range(50):
        pids = [p for p in netns_pids(ns) if not is_zombie(p)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"processes survive in {ns}: {netns_pids(ns)}")


def our_namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.startswith(PREFIX)]


def clean_stale() -> list[str]:
    """Remove namespaces and blackhole routes of earlier runs whose pytest is gone."""
    removed = []
    for ns in our_namespaces():
        m = NAME.match(ns)
        if m and not pid_alive(int(m.group(1))):
            kill_netns_processes(ns)
            ip("netns", "del", ns, check=False)
            removed.append(ns)
    for route in json.loads(ip("-j", "route", "show", "proto", ROUTE_PROTO) or "[]"):
        owner = route.get("metric")
        if route.get("type") == "blackhole" and owner and not pid_alive(int(owner)):
            ip("route", "del", "blackhole", route["dst"], "proto", ROUTE_PROTO, "metric", str(owner), check=False)
            removed.append(f"route {route['dst']}")
    return removed


def pick_subnet() -> ipaddress.IPv4Network:
    """A 10.231.N.0/24 that no route or address of the root namespace touches (default aside)."""
    taken = []
    for route in json.loads(ip("-j", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and ":" not in dst:
            try:
                taken.append(ipaddress.ip_network(dst, strict=False))
            except ValueError:
                pass
    for link in json.loads(ip("-j", "addr") or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                taken.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    start = 100 + os.getpid() % 100
    for i in range(100):
        candidate = ipaddress.ip_network(f"10.231.{100 + (start + i) % 100}.0/24")
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise NetnsUnavailable("no free 10.231.N.0/24 for the test subnet")


class Topology:
    """The bridge namespace and one namespace per host, all with the run's prefix."""

    def __init__(self, hosts: dict[str, int]) -> None:
        self.run = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.run}-br"
        self.host_octets = hosts
        self.subnet: ipaddress.IPv4Network | None = None
        self.created: list[str] = []
        self.route: str | None = None
        self.procs: list[Proc] = []
        self._closed = False

    def ns(self, host: str) -> str:
        return f"{self.run}-{host}"

    def addr(self, host: str) -> str:
        return str(self.subnet.network_address + self.host_octets[host])

    def veth(self, host: str) -> str:
        return f"v-{host}"[:15]

    def create(self) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable("multi-host tests need root (ip netns)")
        clean_stale()
        self.subnet = pick_subnet()
        atexit.register(self.destroy)
        try:
            ip("netns", "add", self.bridge)
        except RuntimeError as exc:
            raise NetnsUnavailable(f"`ip netns add` fails here: {exc}") from None
        self.created.append(self.bridge)
        ip("route", "add", "blackhole", str(self.subnet), "proto", ROUTE_PROTO, "metric", str(os.getpid()))
        self.route = str(self.subnet)
        ip("-n", self.bridge, "link", "set", "lo", "up")
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        for host in self.host_octets:
            ns = self.ns(host)
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", self.bridge, "link", "add", self.veth(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", self.bridge, "link", "set", self.veth(host), "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.addr(host)}/{self.subnet.prefixlen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        self.check_root_clean()

    def check_root_clean(self) -> None:
        """The safety rule itself: no address of the subnet in the root namespace, a blackhole for it."""
        for link in json.loads(ip("-j", "addr")):
            for a in link.get("addr_info", []):
                if a.get("family") == "inet":
                    assert ipaddress.ip_address(a["local"]) not in self.subnet, f"root has {a['local']}"
        routes = json.loads(ip("-j", "route", "show", str(self.subnet)))
        assert routes and all(r.get("type") == "blackhole" for r in routes), routes

    def cut(self, host: str) -> None:
        ip("-n", self.bridge, "link", "set", self.veth(host), "down")

    def heal(self, host: str) -> None:
        ip("-n", self.bridge, "link", "set", self.veth(host), "up")

    def heal_all(self) -> None:
        for host in self.host_octets:
            ip("-n", self.bridge, "link", "set", self.veth(host), "up", check=False)

    def spawn(self, host: str, argv: list[str], log: Path, **kwargs) -> Proc:
        proc = Proc(self.ns(host), argv, log, **kwargs)
        self.procs.append(proc)
        return proc

    def pids(self, host: str) -> list[int]:
        return [p for p in netns_pids(self.ns(host)) if not is_zombie(p)]

    def processes(self, host: str, argv: list[str]) -> list[int]:
        """Live pids in the host's namespace whose command line is exactly `argv`."""
        return sorted(p for p in self.pids(host) if cmdline(p) == argv)

    def sweep(self) -> None:
        """Stop every process we started, then kill anything else still in our namespaces."""
        for proc in self.procs:
            proc.kill()
        self.procs.clear()
        for ns in self.created:
            kill_netns_processes(ns)

    def destroy(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors = []
        try:
            self.sweep()
        except Exception as exc:  # still remove the namespaces
            errors.append(exc)
        for ns in reversed(self.created):
            try:
                ip("netns", "del", ns)
            except RuntimeError as exc:
                errors.append(exc)
        self.created.clear()
        if self.route:
            ip("route", "del", "blackhole", self.route, "proto", ROUTE_PROTO, "metric", str(os.getpid()), check=False)
            self.route = None
        if errors:
            raise RuntimeError(f"cleanup problems: {errors}")


class Proc:
    """A program run inside a namespace, its output in a file."""

    def __init__(self, ns: str, argv: list[str], log: Path, *, env: dict[str, str] | None = None,
                 stdin=subprocess.DEVNULL, stdout=None) -> None:
        self.ns = ns
        self.argv = argv
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(log, "ab")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(die_with_parent([IP, "netns", "exec", ns, *argv]), stdin=stdin,
                                      stdout=stdout if stdout is not None else self._out, stderr=self._out,
                                      cwd=REPO, env=full_env, process_group=0, close_fds=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_log(self, needle: str, timeout: float, count: int = 1) -> None:
        def seen():
            if self.text().count(needle) >= count:
                return True
            if not self.running():
                raise AssertionError(f"{self.argv[:4]} in {self.ns} exited ({self.popen.returncode}) "
                                     f"before logging {needle!r}:\n{self.text()[-3000:]}")
            return False
        wait_for(seen, timeout, f"{needle!r} in {self.log}")

    def signal_group(self, sig: int) -> None:
        """Signal our process group, only while its leader is unreaped (so the id cannot be reused);
        group members that outlive the leader are found by `Topology.sweep` through the namespace."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group and wait; SIGKILL if it will not go."""
        if self.running():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """SIGKILL the process group (a crash: no goodbye)."""
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()


class Driver:
    """probe.py running in the driver namespace; `call` sends it one request and waits for the answer."""

    def __init__(self, topo: Topology, log: Path, tls: tuple[str, ...] = ()) -> None:
        """`tls`: fleetctl's --tls-cert/--tls-key/--tls-ca flags, used by the probe as well."""
        self.topo = topo
        self.tls = tls
        self.proc = topo.spawn("driver", [PYTHON, str(Path(__file__).with_name("probe.py")), *tls], log,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._lock = threading.Lock()
        first = self._answers.get(timeout=60)
        assert first.get("result") == "ready", first

    def _read(self) -> None:
        for line in self.proc.popen.stdout:
            self._answers.put(json.loads(line))
        self._answers.put({"ok": False, "code": "PROBE_GONE", "details": self.proc.text()[-2000:]})

    def call(self, op: str, timeout: float = 30.0, **kwargs) -> dict:
        """The raw answer: {"ok": True, "result": ...} or {"ok": False, "code": ..., "details": ...}."""
        with self._lock:
            self.proc.popen.stdin.write((json.dumps({"op": op, **kwargs}) + "\n").encode())
            self.proc.popen.stdin.flush()
            answer = self._answers.get(timeout=timeout)
        if answer.get("code") in ("PROBE_ERROR", "PROBE_GONE"):
            raise AssertionError(f"probe failed: {answer['details']}")
        return answer

    def get(self, op: str, **kwargs):
        """The result, or an AssertionError naming the gRPC error."""
        answer = self.call(op, **kwargs)
        if not answer["ok"]:
            raise AssertionError(f"{op} {kwargs}: {answer['code']}: {answer['details']}")
        return answer["result"]

    def poll(self, op: str, **kwargs):
        """The result, or None on a gRPC error (for use inside wait_for)."""
        answer = self.call(op, **kwargs)
        return answer["result"] if answer["ok"] else None

    def fleetctl(self, controller: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """fleetctl run inside the driver namespace."""
        argv = [IP, "netns", "exec", self.topo.ns("driver"), PYTHON, "-m", "fleetvisor.cli.main",
                "--controller", controller, "--timeout", "10", *self.tls, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env={"FLEETCTL_CONFIG": "/nonexistent", "PATH": "/usr/bin:/bin", "COLUMNS": "200"})

    def fleetctl_json(self, controller: str, *args: str) -> object:
        result = self.fleetctl(controller, "-o", "json", *args)
        assert result.returncode == 0, f"fleetctl {args} exit {result.returncode}: {result.stderr}"
        return json.loads(result.stdout)
