"""A rolling restart running while its leader dies: the other completes it, once per node."""

from __future__ import annotations

from collections import defaultdict

from .conftest import AGENTS, CONTROLLERS
from .netns import wait_for


def restarts(events, program: str) -> dict[str, int]:
    """STARTING transitions per node, from the agents' own event streams."""
    counts: dict[str, int] = defaultdict(int)
    for _, node, spec, state, _ in events:
        if spec == program and state == "STARTING":
            counts[node] += 1
    return dict(counts)


def max_nodes_down(events, program: str) -> int:
    down: set[str] = set()
    worst = 0
    for _, node, spec, state, _ in events:
        if spec == program:
            (down.discard if state == "RUNNING" else down.add)(node)
            worst = max(worst, len(down))
    return worst


def test_rolling_restart_survives_the_leaders_death_each_node_restarted_once(fleet):
    driver = fleet.driver
    driver.get("watch", agents={n: a.address for n, a in fleet.agents.items()})
    wait_for(lambda: len(driver.get("events")["snapshots"]) == len(AGENTS), 15, "every agent's event stream open")
    pids = fleet.host_pids()

    leader = fleet.wait_leader(timeout=15)
    survivor = next(c for c in CONTROLLERS if c != leader)
    op = driver.get("start_op", ctl=fleet.controllers[leader], group="alpha", batch=1, healthy_for=2.0,
                    op_timeout=30.0)
    assert [[s["node"] for s in b] for b in op["batches"]] == [[n] for n in AGENTS]
    wait_for(lambda: (o := driver.poll("get_op", ctl=fleet.controllers[leader], id=op["id"]))
             and o["current_batch"] >= 1, 30, "the first batch done")
    fleet.ctl_procs[leader].kill()

    done = wait_for(lambda: (o := driver.poll("get_op", ctl=fleet.controllers[survivor], id=op["id"]))
                    and o["state"] in ("OP_SUCCEEDED", "OP_FAILED", "OP_PAUSED", "OP_ABORTED") and o, 90,
                    f"{survivor} to finish the operation")
    assert done["state"] == "OP_SUCCEEDED", done
    assert done["controller_id"] == survivor
    assert all(s["state"] == "STEP_DONE" for b in done["batches"] for s in b)

    wait_for(lambda: len(restarts(driver.get("events")["events"], "alpha")) == len(AGENTS), 15,
             "every node's alpha restart in the event streams")
    log = driver.get("events")
    print(f"\nrolling restart finished by {done['controller_id']}: alpha restarts {restarts(log['events'], 'alpha')}, "
          f"at most {max_nodes_down(log['events'], 'alpha')} node(s) down at once")
    assert not log["errors"], f"an agent's event stream broke: {log['errors']}"
    assert restarts(log["events"], "alpha") == {n: 1 for n in AGENTS}
    assert max_nodes_down(log["events"], "alpha") <= 1
    assert restarts(log["events"], "beta") == {}, "beta is not in the restarted group"

    after = fleet.host_pids()
    for node in AGENTS:
        assert len(after[node]["alpha"]) == 1 and after[node]["alpha"] != pids[node]["alpha"], (node, after[node])
        assert after[node]["beta"] == pids[node]["beta"], node
