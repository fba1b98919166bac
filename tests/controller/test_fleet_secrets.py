"""`%(ENV_X)s` in a pushed config is the agent's environment, never the controller's, and no
answer, controller log line or audit record shows either value."""

from __future__ import annotations

from tests.support import wait_for

from .fleet_harness import fleetctl, states, wait_status
from .test_fleet_config import config_status, push

CONTROLLER_SECRET = "ctl-s3cret-71d0"
AGENT_SECRET = "agent-s3cret-4be9"


def test_environment_values_expand_on_the_agent_and_never_show(fleet, monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET", CONTROLLER_SECRET)
    ctl = fleet.controller()
    monkeypatch.setenv("SECRET", AGENT_SECRET)
    agent = fleet.agent("web-1", ctl)
    wait_status(ctl, lambda s: "web-1:app" in states(s), what="web-1 registered")
    wait_for(ctl.is_leader, 10, "ctl-1 to lead")

    # Valid on the controller (it cannot know the value), refused by the agent by name.
    answer = push(ctl, "leak", "[program:leak]\ncommand=sleep 1000\nnumprocs=%(ENV_SECRET)s\n",
                  nodes=["web-1"])
    wait_for(lambda: "%(ENV_SECRET)s" in config_status(ctl)["web-1"].last_error, 20,
             "the agent's refusal in config status")
    seen = [str(answer), str(config_status(ctl)["web-1"])]

    # A value the agent can use is expanded with the agent's environment.
    out = tmp_path / "expanded"
    push(ctl, "leak", f"[program:leak]\ncommand=/bin/sh -c 'echo %(ENV_SECRET)s > {out}; exec sleep 1000'\n"
                      "startsecs=0\n", nodes=["web-1"])
    wait_for(lambda: out.exists() and out.read_text().strip(), 20, "the program to write its expansion")
    assert out.read_text().strip() == AGENT_SECRET

    audit = fleetctl(ctl.address, "-o", "json", "audit")
    assert audit.returncode == 0, audit.stderr
    seen += [audit.stdout, ctl.log(), "\n".join(agent.daemon.messages())]
    for text in seen:
        assert CONTROLLER_SECRET not in text and AGENT_SECRET not in text
