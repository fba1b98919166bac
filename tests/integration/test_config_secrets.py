"""An agent never shows an environment value in an error: not to ApplyConfig, not to a
supervisorctl reread, not in its log when a SIGHUP finds the file broken."""

from __future__ import annotations

import os
import signal
import subprocess

import grpc
import pytest

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc
from tests.support import free_port

from .ctlharness import SUPERVISORCTL, make_config
from .harness import Daemon

SECRET = "agent-s3cret-9f2c"
LEAK = "[program:leak]\ncommand=sleep 1000\nnumprocs=%(ENV_SECRET)s\n"

FLEETVISOR = """
[fleetvisor]
node=node-s
grpc_listen=127.0.0.1:{port}
state_dir=%(here)s/state
"""


@pytest.fixture
def agent(tmp_path):
    port = free_port()
    config = make_config(tmp_path, FLEETVISOR.format(port=port))
    daemon = Daemon(config, env={**os.environ, "SECRET": SECRET})
    daemon.wait_line(r"gRPC AgentService listening on")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield daemon, pb_grpc.AgentServiceStub(channel), config
    channel.close()
    daemon.stop()


def test_apply_config_names_the_variable(agent):
    daemon, stub, _ = agent
    with pytest.raises(grpc.RpcError) as info:
        stub.ApplyConfig(pb.ApplyConfigRequest(revision="r1", config_text=LEAK), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "%(ENV_SECRET)s" in info.value.details() and SECRET not in info.value.details()
    assert not any(SECRET in line for line in daemon.messages())


def test_reread_and_sighup_name_the_variable(agent):
    daemon, _, config = agent
    config.write_text(config.read_text() + "\n" + LEAK)
    reread = subprocess.run([SUPERVISORCTL, "-c", str(config), "reread"], capture_output=True,
                            text=True, timeout=30, cwd=config.parent)  # the stock client
    out = reread.stdout + reread.stderr
    assert "CANT_REREAD" in out and "%(ENV_SECRET)s" in out and SECRET not in out
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_line(r"restart refused, the config file is not valid: .*%\(ENV_SECRET\)s")
    assert not any(SECRET in line for line in daemon.messages())
    assert SECRET not in (config.parent / "main.log").read_text()
