"""A real fleet with the controller's dashboard on (`--http-listen`), and a small HTTP client
that speaks to it as a browser would (cookies, Origin, the CSRF header) or as an attacker
would (without them). Shared by the API tests and the browser tests."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fleetvisor.cli.certs import issue, make_ca
from tests.support import free_port, wait_for

from .fleet_harness import CLUSTER, FLEETCTL, SLEEPER, Agent, Controller
from .test_fleet_tls import ENV, tls_flags

ADMIN, BOB, VIC, RITA = "alice", "bob", "vic", "rita"
SCOPED = "sam"  # an operator with no built-in grant: what it may do comes from a policy the test sets
TALKER = """
[program:talker]
command=sh -c 'echo hello-dashboard; exec sleep 1000'
startsecs=0
"""
CRASHER = """
[program:crasher]
command=sh -c 'exit 3'
startsecs=1
startretries=0
autorestart=false
"""


def make_pki(directory: Path) -> Path:
    make_ca(directory)
    for name in ("ctl-1", "ctl-2"):
        issue(directory, name, ["127.0.0.1"], role="controller", cluster=CLUSTER)
    for name in ("web-1", "web-2"):
        issue(directory, name, ["127.0.0.1"], role="agent", cluster=CLUSTER)
    issue(directory, ADMIN, [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(directory, BOB, [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(directory, RITA, [], role="operator", groups=["admins"], cluster=CLUSTER)
    issue(directory, VIC, [], role="viewer", cluster=CLUSTER)
    issue(directory, SCOPED, [], role="operator", groups=["web1-ops"], cluster=CLUSTER)
    return directory


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json().get("error", "")


@dataclass
class Client:
    """One browser-like client of the dashboard: keeps the session cookie it is given."""

    base: str  # https://127.0.0.1:PORT
    ca: Path | None = None
    cert: tuple[Path, Path] | None = None
    cookie: str = ""
    csrf: str = ""
    origin: str | None = field(default=None)

    def _connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.base)
        if parts.scheme == "http":
            return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.cert is not None:
            context.load_cert_chain(*self.cert)
        return http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=30)

    def request(self, method: str, path: str, body: object = None, *, csrf: bool = True,
                origin: bool = True, headers: dict[str, str] | None = None) -> Response:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.cookie:
            sent["Cookie"] = self.cookie
        if origin:
            sent.setdefault("Origin", self.origin or self.base)
        if csrf and self.csrf:
            sent.setdefault("X-CSRF-Token", self.csrf)
        conn = self._connection()
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
            answer = conn.getresponse()
            response = Response(answer.status, answer.headers, answer.read())
        finally:
            conn.close()
        for value in response.headers.get_all("Set-Cookie") or []:
            pair = value.split(";")[0]
            self.cookie = "" if pair.endswith("=") or '=""' in pair else pair
        return response

    def login(self, url: str) -> Response:
        token = url.partition("#token=")[2]
        response = self.request("POST", "/api/session", {"token": token})
        if response.status == 200:
            self.csrf = response.json()["csrf"]
        return response

    def whoami(self) -> Response:
        response = self.request("GET", "/api/whoami")
        if response.status == 200:
            self.csrf = response.json()["csrf"]
        return response

    def rpc(self, method: str, body: object = None, **kwargs) -> Response:
        return self.request("POST", f"/api/rpc/{method}", body or {}, **kwargs)

    def sse(self, path: str, until, timeout: float = 30.0) -> list[tuple[str, dict]]:
        """The events of an SSE stream until `until(events)` says enough."""
        conn = self._connection()
        headers = {"Cookie": self.cookie} if self.cookie else {}
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        if answer.status != 200:
            raise AssertionError(f"{path}: {answer.status} {answer.read()!r}")
        conn.sock.settimeout(timeout)
        events: list[tuple[str, dict]] = []
        name = ""
        try:
            while not until(events):
                raw = answer.readline()
                if not raw:
                    break  # the server ended the stream
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
        finally:
            conn.close()
        return events


class DashboardFleet:
    """ctl-1 with the dashboard, and agents web-1 (app, crasher) and web-2 (app)."""

    def __init__(self, fleet, pki: Path | None, *, extra: tuple[str, ...] = (), agents: int = 2) -> None:
        self.fleet = fleet
        self.pki = pki
        self.http_port = free_port()
        tls = tls_flags(pki, "ctl-1") if pki is not None else ()
        self.ctl: Controller = fleet.controller("ctl-1", node_ttl=3,
                                                extra=(*tls, "--http-listen", f"127.0.0.1:{self.http_port}", *extra))
        self.ctl.wait_line("fleet dashboard on")
        self.base = f"{'https' if pki else 'http'}://127.0.0.1:{self.http_port}"
        self.agents: dict[str, Agent] = {}
        for i in range(1, agents + 1):
            node = f"web-{i}"
            tls_conf = (f"tls_cert={pki / node}.pem\ntls_key={pki / node}.key\ntls_ca={pki / 'ca.pem'}\n"
                        if pki is not None else "")
            programs = SLEEPER.format(name="app") + (CRASHER if i == 1 else TALKER)
            agent = Agent(fleet.base, node, [self.ctl.address], labels="role=web", programs=programs,
                          fleetvisor_extra=tls_conf)
            fleet.agents.append(agent)
            self.agents[node] = agent

    def fleetctl(self, user: str | None, *args: str) -> subprocess.CompletedProcess:
        tls = tls_flags(self.pki, user) if self.pki is not None and user else ()
        return subprocess.run([*FLEETCTL, "--controller", self.ctl.address, *tls, *args],
                              capture_output=True, text=True, timeout=30, env=ENV)

    def second_controller(self) -> str:
        """ctl-2, with the fleet's certificate and a dashboard of its own: that dashboard's base URL."""
        http_port = free_port()
        other = self.fleet.controller("ctl-2", node_ttl=3, extra=(*tls_flags(self.pki, "ctl-2"),
                                                                  "--http-listen", f"127.0.0.1:{http_port}"))
        other.wait_line("fleet dashboard on")
        return f"https://127.0.0.1:{http_port}"

    def scope_to_web1(self) -> None:
        """SCOPED reads everywhere and controls the processes of node web-1 only."""
        for name, verbs, nodes in (("ops-read", ["read"], "*"), ("ops-web1", ["control"], "web-1")):
            done = self.fleetctl(ADMIN, "acl", "set", name, "--group", "web1-ops", "--nodes", nodes,
                                 *[f"--verb={v}" for v in verbs])
            assert done.returncode == 0, done.stderr

    def login_url(self, user: str | None, ttl: str = "1h") -> str:
        result = self.fleetctl(user, "dashboard-login", "--ttl", ttl)
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert url.startswith(f"{self.base}/#token="), url
        return url

    def client(self, *, cert: str | None = None) -> Client:
        pair = (self.pki / f"{cert}.pem", self.pki / f"{cert}.key") if cert and self.pki else None
        return Client(self.base, self.pki / "ca.pem" if self.pki else None, pair)

    def logged_in(self, user: str | None) -> Client:
        client = self.client()
        assert client.login(self.login_url(user)).status == 200
        return client

    def pid(self, client: Client, node: str, namespec: str) -> int:
        status = client.rpc("GetStatus").json()
        for n in status["nodes"]:
            if n["node"]["name"] == node:
                for p in n["processes"]:
                    if f"{p['group']}:{p['name']}" == namespec and p["statename"] == "RUNNING":
                        return int(p["pid"])
        return 0

    def wait_running(self, client: Client, node: str, namespec: str) -> int:
        found: list[int] = []

        def running() -> bool:
            found[:] = [self.pid(client, node, namespec)]
            return found[0] > 0
        wait_for(running, 30, f"{node}:{namespec} RUNNING")
        return found[0]
