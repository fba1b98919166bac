"""The optional [fleetvisor] section, and that stock supervisord still takes the file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.model import FleetvisorConfig
from fleetvisor.agent.config.parser import load


def load_text(tmp_path, text: str):
    path = tmp_path / "supervisord.conf"
    path.write_text("[supervisord]\n" + textwrap.dedent(text))
    return load(str(path), environ={"CTRL": "ctl.example:7000"})


@pytest.fixture
def tls(tmp_path):
    for name in ("node.crt", "node.key", "ca.crt"):
        (tmp_path / name).write_text("x")
    return tmp_path


def test_absent_section_is_none(tmp_path):
    assert load_text(tmp_path, "").fleetvisor is None


def test_defaults(tmp_path):
    assert load_text(tmp_path, "[fleetvisor]\n").fleetvisor == FleetvisorConfig(
        node=socket.gethostname())


def test_all_options(tmp_path, tls):
    f = load_text(tmp_path, """
        [fleetvisor]
        node = web-1
        labels = role=web, zone=eu-1
        grpc_listen = 0.0.0.0:50051
        controllers = c1:7000, %(ENV_CTRL)s,[::1]:7001
        tls_cert = %(here)s/node.crt
        tls_key = %(here)s/node.key
        tls_ca = %(here)s/ca.crt
        state_dir = %(here)s/state
    """).fleetvisor
    assert f == FleetvisorConfig(
        node="web-1", labels=(("role", "web"), ("zone", "eu-1")),
        grpc_listen=("0.0.0.0", 50051),
        controllers=(("c1", 7000), ("ctl.example", 7000), ("::1", 7001)),
        tls_cert=str(tls / "node.crt"), tls_key=str(tls / "node.key"),
        tls_ca=str(tls / "ca.crt"), state_dir=str(tls / "state"))


@pytest.mark.parametrize("body, option, message", [
    ("tls_cert=%(here)s/node.crt\n", "tls_key", "set together"),
    ("tls_cert=%(here)s/node.crt\ntls_key=%(here)s/node.key\n", "tls_ca", "set together"),
    ("tls_cert=%(here)s/missing.crt\n", "tls_cert", "not an existing file"),
    ("labels=novalue\n", "labels", "not a valid label"),
    ("grpc_listen=host:port\n", "grpc_listen", "port"),
    ("controllers=:7000\n", "controllers", "HOST:PORT"),
    ("node=a:b\n", "node", "is not plain"),
    ("node=" + "x" * 64 + "\n", "node", "longer than 63"),
    ("nodes=x\n", "nodes", "unknown option"),
])
def test_errors(tmp_path, tls, body, option, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_text(tmp_path, "[fleetvisor]\n" + body)
    assert (info.value.section, info.value.option) == ("fleetvisor", option)
    assert info.value.line is not None


STOCK_CHECK = """
import sys
from supervisor.options import ServerOptions
opts = ServerOptions()
opts.realize(["-c", sys.argv[1]])
print(sorted(g.name for g in opts.process_group_configs))
"""


def test_stock_supervisord_accepts_a_fleetvisor_section(tmp_path, tls):
    path = tmp_path / "supervisord.conf"
    path.write_text(textwrap.dedent(f"""
        [supervisord]
        logfile = {tmp_path}/sd.log
        pidfile = {tmp_path}/sd.pid

        [fleetvisor]
        node = web-1
        labels = role=web,zone=eu-1
        grpc_listen = 0.0.0.0:50051
        controllers = c1:7000,c2:7000
        tls_cert = %(here)s/node.crt
        tls_key = %(here)s/node.key
        tls_ca = %(here)s/ca.crt
        state_dir = %(here)s/state

        [program:app]
        command = /bin/cat
    """))
    ours = load(str(path))
    assert ours.fleetvisor.node == "web-1"
    result = subprocess.run([sys.executable, "-c", STOCK_CHECK, str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['app']"
