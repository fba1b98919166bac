"""An agent SIGKILLed and started again: the programs it had must not be left running twice.

A SIGKILLed supervisord leaves its children running (each is in its own process group) and
the next run starts them again beside the survivors. A fleet agent keeps a ledger of its
children in its state dir and stops the survivors before it starts anything; this checks
that on a real host, judged from the host's own /proc.
"""

from __future__ import annotations

import signal

from .conftest import CONTROLLERS
from .netns import is_zombie, wait_for


def exited(pid: int) -> bool:
    """Gone, or a zombie: an orphan's exit is reaped by init, not by anyone we can wait on."""
    return is_zombie(pid)


def test_agent_sigkill_then_restart_leaves_each_program_running_once(fleet):
    victim = "n2"
    agent = fleet.agents[victim]
    before = agent.programs()
    assert {k: len(v) for k, v in before.items()} == {"alpha": 1, "beta": 1}

    agent.proc.popen.send_signal(signal.SIGKILL)  # kill -9 of the agent process only, not its children
    agent.proc.popen.wait(10)
    assert agent.programs() == before, "the children outlive a SIGKILLed agent (each has its own process group)"
    for ctl in CONTROLLERS:  # the controllers notice the agent is gone
        wait_for(lambda ctl=ctl: not next(n for n in fleet.driver.get("nodes", ctl=fleet.controllers[ctl])
                                         if n["name"] == victim)["reachable"], 15, f"{ctl} to lose {victim}")

    agent.start()
    views = fleet.wait_converged(timeout=45)
    after = agent.programs()
    print(f"\n{victim}: programs before the agent's kill -9 {before}, after its restart {after}")
    assert {k: len(v) for k, v in after.items()} == {"alpha": 1, "beta": 1}, \
        f"programs running twice on {victim} after the agent's kill -9 and restart: {after} (before: {before})"
    for program, (old,) in before.items():
        assert exited(old), f"the old {program} (pid {old}) still runs"
        assert f"(pid {old}), left running by a previous run" in agent.proc.text(), \
            f"the restarted agent did not say it stopped the old {program}"
    for ctl in CONTROLLERS:
        reported = {p["namespec"]: p["pid"] for p in views[ctl][victim]["processes"]}
        assert reported == {k: v[0] for k, v in after.items()}, (ctl, reported, after)
