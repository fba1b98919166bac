"""Run a real agent (or stock supervisord) as a subprocess and watch what it says.

Tests wait for conditions with a deadline; nothing here sleeps and hopes.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.support import wait_for

AGENT = [sys.executable, "-m", "fleetvisor.agent"]
SUPERVISORD = [str(Path(sys.executable).parent / "supervisord")]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")

# The head of an agent's config: a unix socket for the stock supervisorctl, and the main log,
# pidfile and child logs in the config's own directory.
AGENT_HEAD = """
[unix_http_server]
file=%(here)s/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/supervisor.sock

[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
"""


def write_config(directory: Path, body: str, name: str = "supervisord.conf") -> Path:
    path = directory / name
    path.write_text(body.lstrip())
    return path


class Daemon:
    """A supervisord-compatible daemon in the foreground (-n); its stdout is the main log."""

    def __init__(self, config: Path, command: list[str] | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, preexec: Callable[[], None] | None = None) -> None:
        """`preexec` runs in the child before the daemon starts (to lower an rlimit, say)."""
        self.config = config
        argv = [*(command or AGENT), "-c", str(config), "-n", *extra_args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=config.parent, env=env, preexec_fn=preexec)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)

    def messages(self) -> list[str]:
        """Main-log messages without the timestamp, e.g. 'INFO spawned: 'x' with pid 12'."""
        with self._lock:
            return [TIMESTAMP.sub("", line) for line in self.lines]

    def wait_line(self, pattern: str, timeout: float = 10.0, count: int = 1) -> list[re.Match]:
        regex = re.compile(pattern)

        def found():
            matches = [m for m in (regex.search(line) for line in self.messages()) if m]
            return matches if len(matches) >= count else None
        try:
            return wait_for(found, timeout, f"{count} line(s) matching {pattern!r}")  # type: ignore[return-value]
        except AssertionError:
            raise AssertionError(f"no line matching {pattern!r}; the log was:\n" + "\n".join(self.messages()))

    def assert_no_failures(self) -> None:
        """Nothing in the main log says the daemon failed where it should not: no traceback, no unforeseen
        failure of a request."""
        bad = [line for line in self.messages() if "Traceback" in line or "failed unexpectedly" in line]
        assert not bad, "\n".join(self.messages())

    def pid_of(self, name: str, timeout: float = 10.0) -> int:
        m = self.wait_line(rf"spawned: '{re.escape(name)}' with pid (\d+)", timeout)[-1]
        return int(m.group(1))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
