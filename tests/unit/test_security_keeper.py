"""The agent's copy of the fleet's policies and revocations (agent/security/keeper.py)."""

from __future__ import annotations

import os
import stat

from fleetvisor.agent.security.guard import Gate, Mode
from fleetvisor.agent.security.identity import Identity
from fleetvisor.agent.security.keeper import Keeper
from fleetvisor.agent.security.policy import PolicySet, make

WEBOP = Identity("operator", "webop", frozenset({"webops"}), "test", "1f")
STATE = PolicySet(9, [make("web-ops", ["control"], groups=["webops"], programs="web:*")], {"abc": "mallory"})


def keeper(state_dir: str) -> tuple[Keeper, Gate, list[str]]:
    gate = Gate(Mode.TLS)
    said: list[str] = []
    return Keeper(gate, state_dir, said.append), gate, said


def test_an_accepted_state_is_in_force_and_kept_privately(tmp_path):
    first, gate, said = keeper(str(tmp_path / "state"))
    assert not gate.authorizer.may(WEBOP, "control")
    first.accept(STATE)
    assert gate.authorizer.allows(WEBOP, "control", program=("web", "web_0"))
    assert gate.revoked == {"abc": "mallory"} and first.revision == 9
    assert stat.S_IMODE(os.stat(first.path).st_mode) == 0o600
    assert os.listdir(tmp_path / "state") == ["security.json"]  # no temporary left behind
    again, restored, _ = keeper(str(tmp_path / "state"))
    again.load()
    assert again.state == STATE and restored.revoked == {"abc": "mallory"}
    assert restored.authorizer.allows(WEBOP, "control", program=("web", "web_1"))
    assert said == []


def test_no_file_is_silence_and_a_corrupt_one_is_one_warning(tmp_path):
    missing, gate, said = keeper(str(tmp_path))
    missing.load()
    assert said == [] and missing.revision == 0
    (tmp_path / "security.json").write_text('{"policies": [{"name": "bad name!"}]}')
    corrupt, gate, said = keeper(str(tmp_path))
    corrupt.load()
    assert len(said) == 1 and str(tmp_path / "security.json") in said[0]
    assert corrupt.revision == 0 and not gate.authorizer.policies and not gate.revoked


def test_a_state_that_cannot_be_written_still_holds(tmp_path):
    (tmp_path / "file").write_text("")
    unwritable, gate, said = keeper(str(tmp_path / "file"))  # the state dir is a file
    unwritable.accept(STATE)
    assert len(said) == 1 and "cannot keep" in said[0]
    assert gate.revoked == {"abc": "mallory"}
