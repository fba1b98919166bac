"""The mechanics of a re-exec: which command, the probe, the descriptors, the exec itself.

A package upgrade replaces the files of the installed package, not the interpreter: running
the agent again the way it was started (`own_command`) picks up the new code. `--reexec-command`
names another command (a new virtualenv, or a test's wrapper).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

from .state import STATE_VERSION, HandoffState, dumps

RESUME_FLAG = "--resume"
PROBE_FLAG = "--reexec-probe"
PROBE_ANSWER = "fleetvisor-agent reexec-probe ok state-version "
PROBE_VERSION = "agent-version"  # after the state version: the new agent's own version (older ones omit it)
PROBE_TIMEOUT = 30.0
STATE_FILE = "reexec.json"
# Held back from the old agent's last loop pass until the new one handles them: a blocked
# signal stays pending across execve, so a SIGTERM sent meanwhile is acted on, not lost and
# not fatal (the default action would kill the agent between the two loops).
HELD_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2)


class ProbeFailed(Exception):
    """The command that would be exec'd did not pass its dry run; one line says why."""


def own_command() -> list[str]:
    """The interpreter and module or script this agent runs as, without its arguments:
    `python -m fleetvisor.agent` or `python /venv/bin/fleetvisor-agent`."""
    prefix = len(sys.orig_argv) - len(sys.argv) + 1
    return [sys.executable, *sys.orig_argv[1:prefix]]


def probe_answer(state_version: int, agent_version: str) -> str:
    return f"{PROBE_ANSWER}{state_version} {PROBE_VERSION} {agent_version}\n"


def probe(command: list[str], argv: list[str]) -> str:
    """Run `command argv --reexec-probe`: it must load the same config and read this state
    format. Returns the agent version it names ("" if it does not say). Blocks (run it off the
    loop). Raises ProbeFailed."""
    try:
        done = subprocess.run([*command, *argv, PROBE_FLAG], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=PROBE_TIMEOUT, close_fds=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProbeFailed(f"cannot run {command[0]}: {exc}") from None
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or not out.startswith(PROBE_ANSWER):
        said = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        raise ProbeFailed(f"{' '.join(command)} failed its dry run (exit status {done.returncode})"
                          + (f": {said[0]}" if said else ""))
    words = out[len(PROBE_ANSWER):].split()
    try:
        version = int(words[0])
    except (ValueError, IndexError):
        raise ProbeFailed(f"{' '.join(command)} answered its dry run with {out!r}") from None
    if version < STATE_VERSION:
        raise ProbeFailed(f"{' '.join(command)} reads handoff format {version} only; this agent writes "
                          f"{STATE_VERSION}")
    return words[2] if len(words) > 2 and words[1] == PROBE_VERSION else ""


def write_state(state_dir: str, state: HandoffState) -> str:
    """Write the handoff file (0600: it names the agent's descriptors) and return its path."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".reexec-", dir=state_dir)
    with os.fdopen(fd, "w") as f:
        f.write(dumps(state))
    path = os.path.join(state_dir, STATE_FILE)
    os.replace(tmp, path)
    return path


def hold_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)


def release_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


def exec_agent(command: list[str], state: HandoffState, path: str) -> None:
    """Replace this process with `command`, passing the state's descriptors. Returns only if
    the exec failed (OSError raised): the caller still holds everything and can go on."""
    for fd in state.fds():
        os.set_inheritable(fd, True)
    os.execv(command[0], [*command, *state.argv, RESUME_FLAG, path])


def keep_private(fds: list[int]) -> None:
    """Adopted descriptors must not leak into the children spawned from now on."""
    for fd in fds:
        os.set_inheritable(fd, False)
