"""The shipped systemd units start and serve as their comments and README say.

No systemd runs here, so each test builds the command line the way systemd would from the
unit's ExecStart= (specifiers, `$VAR` words from the env file) with this checkout's entry
points, temporary directories and free loopback ports put in place of the installed paths,
and runs it as a real process. What only systemd can check, `systemd-analyze verify` does
(tests/unit/test_deploy_files.py).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from aetcd import rpc

from fleetvisor.cli.certs import issue, make_ca

from tests.support import free_port, pid_alive, wait_for
from tests.unit.test_deploy_files import read_env_file, read_unit

from .etcd_harness import EtcdServer, ServerTLS

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
EXAMPLES = ROOT / "deploy" / "examples" / "controller"
BIN = Path(sys.executable).parent
CREDENTIALS = "/run/credentials/fleetvisor-controller.service"


def exec_start(unit: Path, env: dict[str, str], paths: dict[str, str]) -> list[str]:
    """ExecStart= as systemd turns it into argv: `%d` is the credentials directory, a `$VAR`
    word is the variable split at whitespace (no word at all when it is unset), and then the
    installed paths become the test's."""
    (line,) = read_unit(unit)["Service"]["ExecStart"]
    argv: list[str] = []
    for word in line.split():
        if word.startswith("$"):
            argv += env.get(word[1:], "").split()
            continue
        assert "$" not in word, f"a variable systemd would not split: {word}"
        argv.append(word.replace("%d", CREDENTIALS))
    return [_substitute(word, paths) for word in argv]


def _substitute(text: str, paths: dict[str, str]) -> str:
    for installed, here in paths.items():
        text = text.replace(installed, here)
    return text


class Service:
    """One started ExecStart: its output kept for the test to wait on."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={"PATH": os.environ["PATH"], **env}, process_group=0)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = 30.0) -> re.Match:
        regex = re.compile(pattern)

        def seen():
            found = regex.search(self.log())
            if not found and self.proc.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited ({self.proc.returncode}):\n{self.log()}")
            return found
        return wait_for(seen, timeout, f"{pattern!r} from {' '.join(self.argv)}")

    def terminate(self, timeout: float = 30.0) -> int:
        """systemctl stop under KillMode=process or mixed: SIGTERM to the main process only."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# -- the controller -----------------------------------------------------------------------

@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """The fleet CA: it signs the controller's certificate and fleetctl's."""
    directory = tmp_path / "pki"
    make_ca(directory)
    return directory


def credentials(tmp_path: Path, pki: Path, cluster: str) -> Path:
    """What systemd puts in $CREDENTIALS_DIRECTORY: the controller's certificate, and the
    unit's SetCredential= fallbacks where the etcd files are not installed."""
    cred = tmp_path / "credentials"
    cred.mkdir()
    cert, key = issue(pki, "ctl-1", ["127.0.0.1"], role="controller", cluster=cluster)
    (cred / "tls.pem").write_bytes(cert.read_bytes())
    (cred / "tls.key").write_bytes(key.read_bytes())
    (cred / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    unit = read_unit(SYSTEMD / "fleetvisor-controller.service")["Service"]
    for value in unit.get("SetCredential", []):
        (cred / value.partition(":")[0]).write_text(value.partition(":")[2])
    return cred


def fleetctl(pki: Path, address: str, cluster: str, *args: str) -> subprocess.CompletedProcess:
    cert, key = pki / "admin.pem", pki / "admin.key"
    if not cert.exists():
        issue(pki, "admin", [], role="operator", groups=["admins"], cluster=cluster, client_only=True)
    return subprocess.run([str(BIN / "fleetctl"), "--controller", address, "--tls-cert", str(cert),
                           "--tls-key", str(key), "--tls-ca", str(pki / "ca.pem"), *args],
                          capture_output=True, text=True, timeout=60,
                          env={"FLEETCTL_CONFIG": "/nonexistent", "PATH": os.environ["PATH"], "COLUMNS": "200"})


def controller_paths(tmp_path: Path, cred: Path) -> dict[str, str]:
    return {"/opt/fleetvisor/bin/": f"{BIN}/", CREDENTIALS: str(cred),
            "/var/lib/fleetvisor-controller": str(tmp_path / "state")}


def test_controller_unit_without_env_file_runs_its_embedded_etcd(tmp_path: Path, pki: Path) -> None:
    unit = SYSTEMD / "fleetvisor-controller.service"
    assert read_unit(unit)["Service"]["EnvironmentFile"] == ["-/etc/fleetvisor/controller.env"]  # optional
    cred = credentials(tmp_path, pki, "default")
    paths = controller_paths(tmp_path, cred)
    no_env_file = exec_start(unit, {}, paths)
    assert not any(word.startswith("--etcd") for word in no_env_file), no_env_file
    # The same, on a free port instead of 7400 (other tests may run beside this one): an env
    # file that names nothing but the address keeps the embedded etcd.
    port = free_port()
    env = {"FLEETVISOR_CONTROLLER_ARGS": f"--listen 127.0.0.1:{port}"}
    argv = exec_start(unit, env, paths)
    assert argv == [*no_env_file, "--listen", f"127.0.0.1:{port}"]
    service = Service(argv, {**env, "CREDENTIALS_DIRECTORY": str(cred)})
    try:
        service.wait_line(r"embedded etcd at 127\.0\.0\.1:\d+")
        service.wait_line(rf"serving on 127\.0\.0\.1:{port} \(mutual TLS\)")
        address = f"127.0.0.1:{port}"
        leader = wait_for(lambda: (r := fleetctl(pki, address, "default", "leader")).returncode == 0 and r,
                          30, "fleetctl leader to name a leader")
        assert "leader" in leader.stdout and address in leader.stdout, leader.stdout
        status = fleetctl(pki, address, "default", "nodes")
        assert status.returncode == 0, status.stderr
        assert service.terminate() == 0, service.log()
    finally:
        service.kill()
    assert "Traceback" not in service.log(), service.log()
    assert (tmp_path / "state" / "etcd").is_dir()  # the embedded etcd's data, in the unit's StateDirectory


def _etcd_user(server: EtcdServer, user: str, password: str) -> None:
    """`user` with read-write on /fleetvisor/ only, as the controller README's etcdctl steps make
    it; then root and authentication on."""
    channel = grpc.secure_channel(server.endpoint, server._credentials())
    try:
        auth = rpc.AuthStub(channel)
        auth.UserAdd(rpc.AuthUserAddRequest(name=user, password=password), timeout=10)
        auth.RoleAdd(rpc.AuthRoleAddRequest(name=user), timeout=10)
        auth.RoleGrantPermission(rpc.AuthRoleGrantPermissionRequest(
            name=user, perm=rpc.Permission(permType=rpc.Permission.READWRITE, key=b"/fleetvisor/",
                                           range_end=b"/fleetvisor0")), timeout=10)
        auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=user, role=user), timeout=10)
    finally:
        channel.close()
    server.enable_auth("root-secret")


def test_controller_unit_with_the_env_file_uses_an_external_etcd_over_tls(tmp_path: Path, pki: Path) -> None:
    etcd_pki = tmp_path / "etcd-pki"
    etcd_ca, _ = make_ca(etcd_pki)
    server_cert, server_key = issue(etcd_pki, "etcd", ["127.0.0.1"])
    server = EtcdServer(tmp_path / "etcd", tls=ServerTLS(ca=etcd_ca, cert=server_cert, key=server_key))
    server.start()
    service = None
    try:
        _etcd_user(server, "fleetvisor", "etcd-secret")
        # The template's external-etcd lines, uncommented, pointed at the test's etcd and ports.
        template = (EXAMPLES / "controller.env").read_text()
        lines = [line[1:] for line in template.splitlines()
                 if line.startswith("#FLEETVISOR_") and ("--etcd " in line or "ETCD_PASSWORD" in line)]
        assert len(lines) == 2, f"controller.env should show one external-etcd example and the password: {lines}"
        port = free_port()
        text = "\n".join(lines)
        text = re.sub(r"--etcd \S+", f"--etcd {server.endpoint}", text)
        text = re.sub(r"10\.0\.0\.1:7400", f"127.0.0.1:{port}", text).replace("0.0.0.0:7400", f"127.0.0.1:{port}")
        text = text.replace("change-me", "etcd-secret")
        env_file = tmp_path / "controller.env"
        env_file.write_text(text + "\n")
        env = read_env_file(env_file)
        words = shlex.split(env["FLEETVISOR_CONTROLLER_ARGS"])
        cluster_name = words[words.index("--cluster") + 1]

        cred = credentials(tmp_path, pki, cluster_name)
        client_cert, client_key = issue(etcd_pki, "controller", [], client_only=True)
        # the files the unit loads from /etc/fleetvisor/controller/ replace the fallbacks
        (cred / "etcd-ca.pem").write_bytes(etcd_ca.read_bytes())
        (cred / "etcd.pem").write_bytes(client_cert.read_bytes())
        (cred / "etcd.key").write_bytes(client_key.read_bytes())

        argv = exec_start(SYSTEMD / "fleetvisor-controller.service", env, controller_paths(tmp_path, cred))
        assert argv[argv.index("--etcd") + 1] == server.endpoint
        service = Service(argv, {**env, "CREDENTIALS_DIRECTORY": str(cred)})
        service.wait_line(rf"serving on 127\.0\.0\.1:{port} \(mutual TLS\), cluster '{cluster_name}' \(identity \w+\), "
                          rf"etcd {re.escape(server.endpoint)}")
        assert "embedded etcd" not in service.log()
        address = f"127.0.0.1:{port}"
        leader = wait_for(lambda: (r := fleetctl(pki, address, cluster_name, "leader")).returncode == 0 and r,
                          30, "fleetctl leader to name a leader")
        assert "ctl-1" in leader.stdout, leader.stdout
        assert service.terminate() == 0, service.log()
        assert "Traceback" not in service.log(), service.log()
    finally:
        if service is not None:
            service.kill()
        server.kill()


def test_controller_names_a_missing_etcd_credential(tmp_path: Path, pki: Path) -> None:
    """The external-etcd env file on a host where /etc/fleetvisor/controller/etcd-ca.pem was
    never installed: systemd hands over the fallback, and the controller says which file."""
    cred = credentials(tmp_path, pki, "prod")
    env = {"FLEETVISOR_CONTROLLER_ARGS": f"--etcd 127.0.0.1:{free_port()} --etcd-ca {CREDENTIALS}/etcd-ca.pem "
                                         f"--etcd-cert {CREDENTIALS}/etcd.pem --etcd-key {CREDENTIALS}/etcd.key "
                                         f"--listen 127.0.0.1:{free_port()} --cluster prod"}
    argv = exec_start(SYSTEMD / "fleetvisor-controller.service", env, controller_paths(tmp_path, cred))
    service = Service(argv, {**env, "CREDENTIALS_DIRECTORY": str(cred)})
    try:
        assert service.proc.wait(30) == 2
    finally:
        service.kill()
    wait_for(lambda: "no PEM data" in service.log(), 5, "the error line")
    assert f"etcd CA file {cred}/etcd-ca.pem holds no PEM data" in service.log(), service.log()
    assert "Traceback" not in service.log()


# -- the agent ----------------------------------------------------------------------------

AGENT_CONF = """
[supervisord]
logfile={base}/log/main.log
pidfile={base}/run/agent.pid
childlogdir={base}/log

[inet_http_server]
port=127.0.0.1:{http_port}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=http://127.0.0.1:{http_port}

[fleetvisor]
node=unit-1
grpc_listen=127.0.0.1:{grpc_port}
state_dir={base}/lib

[program:worker]
command=sleep 1000
startsecs=0
stopwaitsecs=5
"""


def supervisorctl(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(config), *args],
                          capture_output=True, text=True, timeout=30)


def running_pid(config: Path) -> int | None:
    found = re.search(r"worker\s+RUNNING\s+pid (\d+)", supervisorctl(config, "status").stdout)
    return int(found.group(1)) if found else None


def test_agent_unit_stops_every_program_and_a_crash_leaves_them_to_the_ledger(tmp_path: Path) -> None:
    unit = SYSTEMD / "fleetvisor-agent.service"
    service_section = read_unit(unit)["Service"]
    # systemctl stop signals the agent alone; a crash leaves the programs to the ledger
    assert service_section["KillMode"] == ["process"]
    assert service_section.get("KillSignal", ["SIGTERM"]) == ["SIGTERM"]
    for name in ("log", "run", "lib"):
        (tmp_path / name).mkdir()
    config = tmp_path / "agent.conf"
    grpc_port = free_port()
    config.write_text(AGENT_CONF.format(base=tmp_path, http_port=free_port(), grpc_port=grpc_port))
    argv = exec_start(unit, {}, {"/opt/fleetvisor/bin/": f"{BIN}/", "/etc/fleetvisor/agent.conf": str(config)})
    assert argv[1:] == ["-n", "-c", str(config)]

    agent = Service(argv, {})
    started: list[Service] = [agent]
    workers: list[int] = []
    try:
        agent.wait_line(r"success: worker entered RUNNING state")
        first = wait_for(lambda: running_pid(config), 15, "supervisorctl to show worker RUNNING")
        workers.append(first)
        info = subprocess.run([str(BIN / "fleetctl"), "--node", f"127.0.0.1:{grpc_port}", "info"],
                              capture_output=True, text=True, timeout=30,
                              env={"FLEETCTL_CONFIG": "/nonexistent", "PATH": os.environ["PATH"]})
        assert info.returncode == 0 and "unit-1" in info.stdout, info.stdout + info.stderr

        # systemctl stop: SIGTERM to the agent alone; it stops the program before it exits
        assert agent.terminate() == 0, agent.log()
        assert "stopped: worker (terminated by SIGTERM)" in agent.log()
        assert not pid_alive(first), "the program outlived a normal stop"

        # a crash: under KillMode=process systemd leaves the program running ...
        agent = Service(argv, {})
        started.append(agent)
        agent.wait_line(r"success: worker entered RUNNING state")
        survivor = wait_for(lambda: running_pid(config), 15, "worker RUNNING again")
        workers.append(survivor)
        agent.proc.kill()
        agent.proc.wait(10)
        assert pid_alive(survivor)
        # ... and Restart= starts the agent again, which stops it gently before starting it anew
        agent = Service(argv, {})
        started.append(agent)
        agent.wait_line(rf"stopping worker:worker \(pid {survivor}\), left running by a previous run")
        wait_for(lambda: not pid_alive(survivor), 15, "the survivor to be stopped")
        fresh = wait_for(lambda: running_pid(config), 15, "a new worker RUNNING")
        workers.append(fresh)
        assert fresh != survivor
        assert agent.terminate() == 0, agent.log()
        assert not pid_alive(fresh)
    finally:
        for one in started:
            one.kill()
        for pid in workers:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
