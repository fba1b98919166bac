"""Off loopback, plaintext gRPC is refused at startup unless asked for: an agent and a controller
listening on a test host's 10.x address without TLS stop with one line that says why."""

from __future__ import annotations

from .conftest import AGENT_PORT, CTL_PORT, PYTHON

PLAIN_AGENT = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/agent.pid

[fleetvisor]
node=n1
grpc_listen={address}:{port}
state_dir=%(here)s/state
{extra}
[program:alpha]
command=sleep 86401
"""


def error_lines(text: str) -> list[str]:
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if "refusing to serve plaintext" in line]


def test_plaintext_agent_and_controller_off_loopback_refuse_to_start(topology, tmp_path):
    address = topology.addr("n1")
    config = tmp_path / "agent" / "supervisord.conf"
    config.parent.mkdir()
    config.write_text(PLAIN_AGENT.format(address=address, port=AGENT_PORT, extra=""))
    agent = topology.spawn("n1", [PYTHON, "-m", "fleetvisor.agent", "-c", str(config), "-n"], tmp_path / "agent.out")
    try:
        assert agent.popen.wait(60) == 2
    finally:
        agent.kill()
    (line,) = error_lines(agent.text())
    assert line.startswith("Error: ") and address in line and "tls_cert" in line and "insecure" in line, line
    assert not topology.processes("n1", ["sleep", "86401"]), "the refused agent started its programs"

    # with its embedded etcd: the refusal must come from the listen address, not from a missing etcd
    ctl = topology.spawn("ctl-a", [PYTHON, "-m", "fleetvisor.controller",
                                   "--listen", f"{topology.addr('ctl-a')}:{CTL_PORT}", "--cluster", "mh",
                                   "--state-dir", str(tmp_path / "ctl")], tmp_path / "ctl.out")
    try:
        assert ctl.popen.wait(60) not in (0, None)
    finally:
        ctl.kill()
    (line,) = error_lines(ctl.text())
    assert topology.addr("ctl-a") in line and "--tls-cert" in line and "--insecure" in line, line

    # the same agent with insecure = true serves: the refusal above was for plaintext, nothing else
    config.write_text(PLAIN_AGENT.format(address=address, port=AGENT_PORT, extra="insecure=true\n"))
    allowed = topology.spawn("n1", [PYTHON, "-m", "fleetvisor.agent", "-c", str(config), "-n"],
                             tmp_path / "allowed.out")
    try:
        allowed.wait_log("gRPC AgentService listening on", 60)
    finally:
        allowed.terminate()
    assert not error_lines(allowed.text())
