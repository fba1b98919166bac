"""Which configs a node gets when it refuses its fleet file as a whole (controller/perconfig.py).

The node is played by a pure function of the fleet file it is offered: this is the decision
alone; tests/controller/test_fleet_refusals.py runs it against real agents."""

from __future__ import annotations

import asyncio
import re

import pytest

from fleetvisor.controller import configs
from fleetvisor.controller.configs import Part, compose
from fleetvisor.controller.errors import InvalidArgument
from fleetvisor.controller.perconfig import accepted

GOOD = Part("good", 2, "[program:g]\ncommand=g\n")
BAD = Part("bad", 3, "[program:b]\ncommand=REFUSED\n")
BAD_BEFORE = Part("bad", 2, "[program:b]\ncommand=b\n")


def node_refusing(word: str):
    """A node that refuses any file holding `word`; records what it was offered."""
    offered: list[str] = []

    async def trial(file: configs.Desired) -> str:
        offered.append(file.revision)
        return f"{word} is not allowed here" if word in file.text else ""
    return trial, offered


def run(wanted, running, trial):
    return asyncio.run(accepted(compose(wanted), running, trial))


def test_a_refused_new_config_stays_off_and_the_others_go_out():
    trial, offered = node_refusing("REFUSED")
    file, refused = run([GOOD, BAD], {}, trial)
    assert file.revision == "good@2"
    assert refused == {"bad": "REFUSED is not allowed here"}
    assert offered == ["bad@3", "good@2"]  # name order, each on top of those accepted


def test_a_refused_revision_leaves_the_one_the_node_runs():
    trial, _ = node_refusing("REFUSED")
    file, refused = run([GOOD, BAD], {"bad": BAD_BEFORE, "good": Part("good", 1, "[program:g]\ncommand=g1\n")},
                        trial)
    assert file.revision == "bad@2,good@2"
    assert "command=b\n" in file.text and list(refused) == ["bad"]


def test_nothing_goes_out_when_what_the_node_runs_cannot_be_rebuilt():
    trial, _ = node_refusing("REFUSED")
    assert run([GOOD, BAD], {"bad": None}, trial) is None


def test_nothing_goes_out_when_the_node_now_refuses_what_it_runs():
    trial, _ = node_refusing("REFUSED")
    assert run([GOOD, BAD], {"bad": BAD}, trial) is None  # the same revision: its own file changed


def test_configs_no_longer_wanted_are_dropped():
    trial, _ = node_refusing("REFUSED")
    file, refused = run([GOOD], {"old": Part("old", 1, "[program:o]\ncommand=o\n")}, trial)
    assert file.revision == "good@2" and refused == {}


def test_applied_revision_ids_give_config_revisions():
    assert configs.revision_numbers("a@3,b-c@12") == {"a": 3, "b-c": 12}
    assert configs.revision_numbers("none") == {}
    assert configs.revision_numbers("manual,x@y") == {}


@pytest.mark.parametrize("local, clash", [
    ({"web-1": ["program:app"]}, "defines [program:app], which node web-1 already defines"),
    ({f"web-{i}": ["program:app"] for i in range(5)}, "node web-0, web-1, web-2 (and 2 more)"),
    ({"web-1": ["program:other", "group:app"]}, None),
])
def test_pushes_are_checked_against_the_nodes_own_sections(local, clash):
    text = "[program:app]\ncommand=x\n[program:more]\ncommand=y\n"
    if clash is None:
        configs.check_local("web", text, local)
        return
    with pytest.raises(InvalidArgument, match=re.escape(clash)):
        configs.check_local("web", text, local)
