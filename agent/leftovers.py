"""Children that outlived a killed agent: recorded while they run, stopped at the next start.

supervisord's children keep running when supervisord itself is SIGKILLed (or crashes), and the
next supervisord starts them again beside the survivors, so each program runs twice. The agent
keeps a ledger of its running children in its state dir (`children.json`: pid, the kernel's
start time of that pid, and the boot it belongs to). At startup, before any program starts, a
ledger entry whose pid still belongs to the same process is stopped like the program would be
(its stop signal to its process group, then SIGKILL after stopwaitsecs). A pid that was reused
by another process has another start time and is left alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config.model import Config
from .mainlog import MainLog
from .states import ProcessState
from .supervisor import Change, ProcessStateChange, Supervisor

if TYPE_CHECKING:
    from .process import Process
from .timeouts import wait_within

LEDGER = "children.json"
ALIVE = {ProcessState.STARTING, ProcessState.RUNNING, ProcessState.STOPPING}


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19]) if fields[0] != "Z" else None


@dataclass(frozen=True)
class Entry:
    namespec: str
    pid: int
    started: int


class Ledger:
    """Keeps `children.json` current from the core's state changes (written once per loop pass)."""

    def __init__(self, state_dir: str, core: Supervisor) -> None:
        self.path = os.path.join(state_dir, LEDGER)
        self.state_dir = state_dir
        self.boot = boot_id()
        self.entries: dict[str, Entry] = {}
        self._pending = False
        self.broken = False  # the state dir is not writable: give up quietly
        self._unsubscribe = core.subscribe(self._changed)

    def close(self) -> None:
        self._unsubscribe()

    def _changed(self, change: Change) -> None:
        if isinstance(change, ProcessStateChange) and not self.broken:
            self._note(change.process, change.new)

    def seed(self, core: Supervisor) -> None:
        """Record the processes that run already (taken over from a re-exec'd agent)."""
        for proc in core.all_processes():
            if proc.state in ALIVE and proc.pid:
                self._note(proc, proc.state)

    def _note(self, proc: Process, state: ProcessState) -> None:
        spec = f"{proc.group.name}:{proc.name}"
        if state in ALIVE and proc.pid:
            started = start_time(proc.pid)
            if started is not None:
                self.entries[spec] = Entry(spec, proc.pid, started)
        else:
            self.entries.pop(spec, None)
        if not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self.write)

    def write(self) -> None:
        self._pending = False
        data = {"boot": self.boot, "children": [e.__dict__ for e in self.entries.values()]}
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".children-", dir=self.state_dir)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except OSError:
            self.broken = True


def read_survivors(state_dir: str) -> list[Entry]:
    """Ledger entries whose process is still the same one (same boot, same start time)."""
    try:
        with open(os.path.join(state_dir, LEDGER)) as f:
            data = json.load(f)
        if data.get("boot") != boot_id():
            return []
        entries = [Entry(str(c["namespec"]), int(c["pid"]), int(c["started"])) for c in data["children"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [e for e in entries if e.pid > 1 and e.pid != os.getpid() and start_time(e.pid) == e.started]


def _stop_plan(config: Config, namespec: str) -> tuple[int, float]:
    group, _, name = namespec.partition(":")
    for gconfig in config.groups:
        if gconfig.name == group:
            for pconfig in gconfig.processes:
                if pconfig.name == name:
                    return pconfig.stopsignal, float(pconfig.stopwaitsecs)
    return int(signal.SIGTERM), 10.0


def _signal(pid: int, sig: int) -> None:
    """To the process group it leads (so its own children go too), else to the process. The
    leader may be gone already while its group is not: the group is signalled then too."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


async def _gone(pidfd: int, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(True)

    loop.add_reader(pidfd, readable)
    try:
        return await wait_within(done, timeout)
    finally:
        loop.remove_reader(pidfd)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in the group. Zombies count for the
    kernel, and a container's init may reap orphans late, so /proc is read instead."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


async def _group_gone(pgid: int, deadline: float) -> bool:
    """Until no live process is left in the group (its own children, signalled with it), or
    the deadline. Groups have no pidfd, so this looks every 10 ms; it runs once, at startup."""
    loop = asyncio.get_running_loop()
    while _group_alive(pgid):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def stop_survivors(config: Config, state_dir: str, log: MainLog) -> None:
    """Stop what a previous run of this agent left running, before this run starts anything."""
    async def stop(entry: Entry) -> None:
        try:
            pidfd = os.pidfd_open(entry.pid)
        except OSError:
            return  # gone already
        try:
            if start_time(entry.pid) != entry.started:
                return
            sig, wait = _stop_plan(config, entry.namespec)
            log.warn(f"stopping {entry.namespec} (pid {entry.pid}), left running by a previous run "
                     "of this agent that did not stop it")
            deadline = asyncio.get_running_loop().time() + wait
            _signal(entry.pid, sig)
            if not await _gone(pidfd, wait) or not await _group_gone(entry.pid, deadline):
                _signal(entry.pid, signal.SIGKILL)
                await _gone(pidfd, 5.0)
        finally:
            os.close(pidfd)
    await asyncio.gather(*(stop(e) for e in read_survivors(state_dir)))
