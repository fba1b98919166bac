"""The health gate of a rolling agent upgrade: pure comparisons of a node's agent before its
re-exec and after it.

A re-exec keeps the agent's pid, its journal's run identity and every child (pid and state);
the new agent must report the version it is expected to be. Which version that is, is decided
before anything changes: `--expect-version` when the operator gave one, otherwise the version the
installed agent names in its dry run (the probe that every re-exec runs first). An installed
agent too old to name its version in the dry run leaves only "reports a version" to check.
Nothing here does I/O; the engine (operations.py) feeds it what the agent said.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .opmodel import AgentMark, Held
from .planning import Health
from .processes import ProcessView


class VersionRefused(Exception):
    """The installed agent is not the version the operator expects: nothing is re-exec'd."""


@dataclass(frozen=True)
class AgentSeen:
    """What an agent says about itself at one moment."""

    version: str
    pid: int
    run_id: str
    processes: tuple[Held, ...]


def held(processes: Iterable[ProcessView]) -> tuple[Held, ...]:
    """(namespec, pid, state) of every process, by namespec."""
    return tuple(sorted((Held(p.namespec, p.pid, p.statename) for p in processes), key=lambda h: h.namespec))


def expected_version(expect: str, installed: str) -> str:
    """The version the agent must come back with: `expect` (the operator's) if given, else
    `installed` (what the dry run named; "" when it did not say). Raises VersionRefused when
    both are known and differ: the host's package is not the one being rolled out."""
    if expect and installed and expect != installed:
        raise VersionRefused(f"the installed agent is version {installed}, not {expect}; nothing was changed")
    return expect or installed


def mark(before: AgentSeen, expected: str) -> AgentMark:
    """What the step records (durably, before the re-exec is sent) to judge the agent by."""
    return AgentMark(version_before=before.version, version_expected=expected, pid=before.pid,
                     run_id=before.run_id, held=list(before.processes))


def judge(recorded: AgentMark, now: AgentSeen) -> str:
    """Why the agent as it is `now` fails the gate, or "" when it passes: the same pid and run,
    the expected version (any, when none is known), and every process it had with the same pid
    and state. One line, naming the first process that differs."""
    if now.pid != recorded.pid:
        return f"the agent came back as pid {now.pid}, not {recorded.pid}: it restarted instead of re-exec'ing"
    if recorded.run_id and now.run_id and now.run_id != recorded.run_id:
        return "the agent came back with a new journal run: it restarted instead of re-exec'ing"
    if not now.version:
        return "the agent reports no version"
    if recorded.version_expected and now.version != recorded.version_expected:
        return f"the agent reports version {now.version}, expected {recorded.version_expected}"
    current = {p.namespec: p for p in now.processes}
    for before in sorted(recorded.held, key=lambda h: h.namespec):
        after = current.get(before.namespec)
        if after is None:
            return f"{before.namespec} (pid {before.pid}, {before.state}) is gone"
        if after.pid != before.pid:
            return f"{before.namespec} has pid {after.pid}, had {before.pid}"
        if after.state != before.state:
            return f"{before.namespec} is {after.state}, was {before.state}"
    return ""


def health(recorded: AgentMark, now: AgentSeen) -> Health:
    """The gate as the engine's healthy-for wait reads it."""
    failure = judge(recorded, now)
    return Health(not failure, failure)
