"""Start stock supervisord or the agent on a generated config and measure it from outside.

Both are driven the same way: the same config text, the same stock XML-RPC client over the
same kind of unix socket, CPU and memory read from /proc.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

VENV_BIN = Path(sys.executable).parent
COMMANDS = {
    "supervisord": [str(VENV_BIN / "supervisord")],
    "agent": [sys.executable, "-m", "fleetvisor.agent"],
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def config_text(workdir: Path, programs: str, extra_supervisord: str = "") -> str:
    return f"""
[unix_http_server]
file={workdir}/supervisor.sock

[supervisord]
logfile={workdir}/supervisord.log
pidfile={workdir}/supervisord.pid
childlogdir={workdir}
minfds=16384
loglevel=info
{extra_supervisord}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{workdir}/supervisor.sock

{programs}
"""


def sleepers(count: int, startsecs: int = 0) -> str:
    return "".join(f"[program:p{i}]\ncommand=sleep 100000\nstartsecs={startsecs}\n"
                   f"stdout_logfile=NONE\nstderr_logfile=NONE\n\n" for i in range(count))


@dataclass
class Usage:
    cpu_seconds: float
    rss_bytes: int


def children_of(pid: int) -> list[int]:
    """The pids of a process's children, from every thread's list."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def usage(pid: int) -> Usage:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    return Usage(cpu, rss)


class Daemon:
    """One daemon in the foreground, in its own temporary directory."""

    def __init__(self, kind: str, programs: str, extra_supervisord: str = "") -> None:
        self.kind = kind
        self.workdir = Path(tempfile.mkdtemp(prefix=f"fv-bench-{kind}-"))
        self.config = self.workdir / "supervisord.conf"
        self.config.write_text(config_text(self.workdir, programs, extra_supervisord))
        self.started_at = 0.0
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([*COMMANDS[self.kind], "-c", str(self.config), "-n", "-s"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=self.workdir)
        return self.started_at

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rpc(self, timeout: float = 120.0) -> xmlrpc.client.ServerProxy:
        transport = SupervisorTransport(None, None, f"unix://{self.workdir}/supervisor.sock")
        transport.timeout = timeout
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def wait_until(self, predicate, timeout: float = 300.0, interval: float = 0.01):
        """Ask over XML-RPC until predicate(server) is true; returns the monotonic time it was."""
        deadline = time.monotonic() + timeout
        server = self.rpc()
        while time.monotonic() < deadline:
            try:
                if predicate(server):
                    return time.monotonic()
            except (OSError, xmlrpc.client.Error):
                server = self.rpc()  # not listening yet
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see {self.workdir}")
            time.sleep(interval)
        raise TimeoutError(f"{self.kind}: condition not met within {timeout}s")

    def all_running(self, count: int) -> float:
        def done(server) -> bool:
            infos = server.supervisor.getAllProcessInfo()
            return len(infos) == count and all(i["statename"] == "RUNNING" for i in infos)
        return self.wait_until(done)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
