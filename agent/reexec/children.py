"""The core's processes into the handoff state (old agent) and back out of it (new agent)."""

from __future__ import annotations

import os

from ..health import Health, Verdict
from ..leftovers import start_time
from ..process import Process
from ..states import ProcessState
from ..supervisor import Supervisor
from .state import ChildState

# The Lifecycle attributes a handoff carries, by the same names in ChildState.
LIFECYCLE_FIELDS = ("laststart", "laststop", "laststopreport", "delay", "backoff", "killing", "exitstatus",
                    "spawnerr", "system_stop", "administrative_stop", "waiting")


class AdoptError(Exception):
    """A child in the handoff state cannot be taken over; one line says which and why."""


def unsupported(core: Supervisor) -> str | None:
    """Why this core cannot be handed over yet, or None. fcgi-programs (their shared
    listening socket) are not carried."""
    for group in core.groups.values():
        if group.fcgi_socket is not None:
            return f"group {group.name!r} is an fcgi-program, which a re-exec does not carry yet"
    return None


def capture_children(core: Supervisor) -> list[ChildState]:
    """Detach every process from the loop and describe it. After this the core must not run
    again: its processes are no longer watched."""
    children = []
    for proc in core.all_processes():
        life = proc.lifecycle
        stdin, stdout, stderr, pending = proc.detach()
        pid = life.pid
        verdict = proc.health.verdict if proc.health is not None else Verdict()
        children.append(ChildState(
            namespec=proc.namespec, state=life.state.name, pid=pid,
            started=start_time(pid) if pid else None,
            **{name: getattr(life, name) for name in LIFECYCLE_FIELDS},
            stdin_fd=stdin, stdout_fd=stdout, stderr_fd=stderr, stdin_pending=pending.decode("latin-1"),
            stdout_logfile=proc.stdout_logfile, stderr_logfile=proc.stderr_logfile,
            health=verdict.health.value, health_failures=verdict.failures, health_message=verdict.message))
    return children


def auto_logs_of(children: list[ChildState]) -> dict[str, dict[tuple[str, str], str]]:
    """group -> {(process, channel): path}: the log files in use, for the groups to be made with
    (an AUTO log is a fresh file per run of the agent otherwise)."""
    found: dict[str, dict[tuple[str, str], str]] = {}
    for child in children:
        group, _, name = child.namespec.partition(":")
        for channel, path in (("stdout", child.stdout_logfile), ("stderr", child.stderr_logfile)):
            if path is not None:
                found.setdefault(group, {})[(name, channel)] = path
    return found


def _still_ours(pid: int, started: int | None) -> bool:
    """Whether `pid` is the child that was handed over. Our own child cannot have been reaped
    by anyone else, so a pid whose parent is this process is it, zombie or not; the start
    time guards against a pid reused by some other process all the same."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    if int(fields[1]) != os.getpid():
        return False
    return fields[0] == "Z" or started is None or int(fields[19]) == started


def adopt_children(core: Supervisor, children: list[ChildState]) -> int:
    """Give each configured process its handed-over lifecycle and watch the running ones.
    Returns how many running children were adopted. Raises AdoptError, before anything is
    watched, if a child does not fit this config. A child that is no longer ours was reaped
    by someone else meanwhile: it is handled as an exit with an unknown status."""
    procs: dict[str, Process] = {p.namespec: p for p in core.all_processes()}
    for child in children:
        if child.namespec not in procs:
            raise AdoptError(f"{child.namespec} (pid {child.pid}) is not in the config any more")
    adopted = 0
    for child in children:
        proc = procs[child.namespec]
        life = proc.lifecycle
        life.state = ProcessState[child.state]
        life.pid = child.pid
        for name in LIFECYCLE_FIELDS:
            setattr(life, name, getattr(child, name))
        if child.pid:
            gone = not _still_ours(child.pid, child.started)
            if gone:
                core.log.warn(f"re-exec: {child.namespec} (pid {child.pid}) was reaped by another process during "
                              "the handover; its exit status is lost")
            verdict = Verdict(Health(child.health), child.health_failures, child.health_message) \
                if child.health else Verdict()
            try:
                proc.attach(child.pid, child.stdin_fd, child.stdout_fd, child.stderr_fd,
                            child.stdin_pending.encode("latin-1"), gone=gone, health=verdict)
            except OSError as exc:
                raise AdoptError(f"{child.namespec}: cannot watch pid {child.pid}: {exc.strerror}") from None
            adopted += not gone
    return adopted
