"""The handoff file's format: versioned JSON that a newer agent reads, never pickle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetvisor.agent.main import _without_internal
from fleetvisor.agent.reexec.state import STATE_VERSION, StateError, dumps, loads, read

pytestmark = pytest.mark.unit

# Written by a real agent at format version 1 (a re-exec whose new command copied its handoff
# file): whatever the format becomes, a new agent must still take over from an agent this old.
FIXTURE_V1 = Path(__file__).parent.parent / "fixtures" / "reexec" / "state-v1.json"
# Version 2 (health verdicts), written the same way by the agent that introduced it.
FIXTURE_V2 = Path(__file__).parent.parent / "fixtures" / "reexec" / "state-v2.json"


def test_the_first_format_written_by_a_real_agent_is_read():
    state = read(str(FIXTURE_V1))
    assert state.version == STATE_VERSION  # upgraded on reading
    assert {c.health for c in state.children} == {""}  # version 1 knew no health: unknown
    assert state.argv[:3] == ["-c", "supervisord.conf", "-n"]
    assert [(s.kind, s.host, s.port) for s in state.sockets] == [("inet", "127.0.0.1", 19321)]
    by_name = {c.namespec: c for c in state.children}
    assert by_name["s:s"].state == "RUNNING" and by_name["s:s"].pid > 0 and by_name["s:s"].started
    assert by_name["talker:talker"].state == "STARTING" and by_name["talker:talker"].laststart > 0
    assert by_name["idle:idle"].state == "STOPPED" and by_name["idle:idle"].stdout_fd == -1
    assert by_name["s:s"].stdout_fd >= 0 and by_name["s:s"].stdout_logfile.endswith(".log")
    [pool] = state.pools
    assert pool.name == "recorder" and pool.serial == 6
    assert [e.serial for e in pool.buffer] == list(range(7))
    assert pool.buffer[0].name == "PROCESS_STATE_STARTING" and pool.buffer[0].pool_serials == {"recorder": 0}
    assert [(listener.namespec, listener.state, listener.event) for listener in pool.listeners] == [
        ("recorder:recorder", "ACKNOWLEDGED", None)]
    assert sorted(state.fds()) == sorted(
        [s.fd for s in state.sockets]
        + [fd for c in state.children for fd in (c.stdin_fd, c.stdout_fd, c.stderr_fd) if fd >= 0])


def test_the_second_format_carries_health_verdicts():
    state = read(str(FIXTURE_V2))
    assert state.version == 2
    by_name = {c.namespec: c for c in state.children}
    assert (by_name["s:s"].health, by_name["s:s"].health_failures) == ("healthy", 0)
    assert by_name["idle:idle"].health == "unknown"


@pytest.mark.parametrize("fixture", [FIXTURE_V1, FIXTURE_V2])
def test_what_is_written_reads_back_the_same(fixture):
    state = read(str(fixture))
    again = loads(dumps(state))
    assert again == state
    if state.version == json.loads(fixture.read_text())["version"]:
        assert json.loads(dumps(again)) == json.loads(fixture.read_text())


@pytest.mark.parametrize(("text", "needle"), [
    ("not json", "the handoff file is not JSON"),
    ("[]", "the handoff file has no version number"),
    ('{"version": "1"}', "the handoff file has no version number"),
    (json.dumps({"version": STATE_VERSION + 1}), f"format version {STATE_VERSION + 1}; this agent reads up to"),
    (json.dumps({"version": 0}), "format version 0, which this agent cannot read"),
    (json.dumps({"version": 1, "sockets": [], "children": []}), "the handoff file is malformed"),
    (json.dumps({**json.loads(FIXTURE_V1.read_text()), "children": [{"namespec": "x", "bogus": 1}]}),
     "the handoff file is malformed"),
])
def test_bad_files_are_one_clear_line(text, needle):
    with pytest.raises(StateError) as info:
        loads(text)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(StateError, match=r"cannot read the handoff file .*nope\.json"):
        read(str(tmp_path / "nope.json"))


def test_the_resume_marker_is_not_passed_on():
    argv = ["-c", "x.conf", "--resume", "/s/reexec.json", "-n", "--reexec-probe"]
    assert _without_internal(argv) == ["-c", "x.conf", "-n"]
    assert _without_internal(["--resume=/s/r.json", "-n"]) == ["-n"]
