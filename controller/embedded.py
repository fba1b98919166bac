"""An etcd the controller starts itself, for a one-host setup or a demo.

etcd runs as a child on free loopback ports with its data in `data_dir/etcd`, so a later
start on the same directory finds the same data. It is spawned with plain `subprocess`
(no `preexec_fn`, which is unsafe with threads such as gRPC's) and watched through a pidfd
on the event loop, as the agent watches its children; asyncio's own subprocess support
would add a waiter thread per child on Python 3.11.

The child must not outlive a controller that is SIGKILLed, and `prctl(PR_SET_PDEATHSIG)`
needs code between fork and exec. So the child first runs a few lines of Python
(`die_with_parent`) that ask the kernel for SIGTERM when the controller dies and then exec
etcd in place; the death signal survives exec. It also runs in its own process group, so a
Ctrl-C at the controller's terminal reaches the controller, which can resign its leadership
before it stops etcd.

Once running, `supervise()` watches it: an etcd that dies under a running controller is
started again on the same data dir and the same ports (so the controller's client, watches
and leases carry on against the same endpoint), with backoff; when that keeps failing it
raises, and the controller exits non-zero for its service manager to restart it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from aetcd import rpc

from .backoff import Backoff
from .etcd import Client, EtcdError, describe

log = logging.getLogger("fleetvisor.controller")

NOT_FOUND = "etcd not found: install Debian's etcd-server (apt-get install etcd-server) or pass --etcd HOST:PORT"
NAME = "fleetvisor-embedded"

# Runs in the child before etcd: SIGTERM us when the parent dies, unless it already has.
_DEATH_SIGNAL_SHIM = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


_MARK = "--- fleetvisor:"


def _readable(line: str) -> str:
    """etcd logs JSON (zap); keep its level, message and error."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line.strip()
    if not isinstance(entry, dict):
        return line.strip()
    text = f"{entry.get('level', '?')}: {entry.get('msg', '')}"
    return f"{text} ({entry['error']})" if "error" in entry else text


def die_with_parent(argv: list[str]) -> list[str]:
    """Wrap `argv` (argv[0] an absolute path) so the program gets SIGTERM when we die.

    Linux ties the death signal to the thread that forked: call this from the thread that
    runs the event loop, as everything in the controller does.
    """
    return [sys.executable, "-I", "-S", "-c", _DEATH_SIGNAL_SHIM, str(os.getpid()), *argv]


def free_port() -> int:
    """A loopback port nothing listens on right now (etcd binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RESTART_ATTEMPTS = 5      # restarts in a row that may fail before the controller gives up
RESTART_WITHIN = 60.0     # seconds all of them may take together
STAYS_UP = 30.0           # an etcd up this long counts as recovered: its next death starts afresh


def exit_text(code: int) -> str:
    """Popen's returncode as words: "status 3" or "signal SIGKILL"."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


class EmbeddedEtcd:
    """One single-member etcd owned by this process; `start()` returns its client endpoint."""

    def __init__(self, data_dir: Path, binary: str = "etcd", *, ready_timeout: float = 30.0,
                 stop_timeout: float = 10.0, restart_attempts: int = RESTART_ATTEMPTS,
                 restart_within: float = RESTART_WITHIN, stays_up: float = STAYS_UP) -> None:
        self.data_dir = Path(data_dir)
        self.binary = binary
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.restart_attempts = restart_attempts
        self.restart_within = restart_within
        self.stays_up = stays_up
        self.endpoint: str | None = None
        self.restarts = 0  # successful restarts after an unexpected exit
        # the ports of the first start, kept for every later start: clients know this endpoint
        self._ports: tuple[int, int] | None = None
        self._stopping = False
        self._ready_at = 0.0
        self._proc: subprocess.Popen | None = None
        self._pidfd = -1
        self._exited: asyncio.Future[int] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "etcd.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._exited is not None and not self._exited.done()

    def _argv(self, path: str, client_port: int, peer_port: int) -> list[str]:
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        return [path, "--name", NAME, "--data-dir", str(self.data_dir / "etcd"),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"{NAME}={peer_url}", "--initial-cluster-state", "new",
                # keep history bounded; the controller's mirror reloads when it falls behind
                "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h",
                "--logger", "zap", "--log-outputs", "stderr"]

    async def start(self) -> str:
        """Start etcd and wait until it serves reads; returns "127.0.0.1:PORT"."""
        if self.running:
            assert self.endpoint is not None, "start() is not re-entrant"
            return self.endpoint
        path = shutil.which(self.binary)
        if path is None:
            raise EtcdError(NOT_FOUND)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EtcdError(f"cannot create etcd data dir {self.data_dir}: {exc.strerror}") from None
        self._stopping = False
        for attempt in range(3):
            try:
                return await self._start_once(os.path.abspath(path))
            except EtcdError as exc:
                # another process took a port between our probe and etcd's bind: pick new ones,
                # unless clients already know these (a restart): then this attempt failed
                if "address already in use" not in str(exc) or attempt == 2 or self.endpoint:
                    raise
                self._ports = None
        raise AssertionError("unreachable")

    async def _start_once(self, path: str) -> str:
        loop = asyncio.get_running_loop()
        if self._ports is None:
            self._ports = free_port(), free_port()
        client_port, peer_port = self._ports
        endpoint = f"127.0.0.1:{client_port}"
        with open(self.log_path, "ab") as log:
            log.write(f"{_MARK} starting etcd on {endpoint} ---\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(die_with_parent(self._argv(path, client_port, peer_port)),  # noqa: ASYNC220 - see the module docstring
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        process_group=0, close_fds=True)
            except OSError as exc:
                raise EtcdError(f"cannot start etcd ({path}): {exc.strerror}") from None
        self._proc = proc
        self._exited = exited = loop.create_future()
        self._pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(self._pidfd, self._on_exit, proc, exited)
        try:
            await self._wait_ready(endpoint, exited)
        except BaseException:
            await self._terminate()
            raise
        self.endpoint = endpoint
        self._ready_at = time.monotonic()
        return endpoint

    async def supervise(self) -> None:
        """Restart etcd whenever it exits without `stop()`; returns only after `stop()`.

        Raises EtcdError, in one line, when `restart_attempts` restarts in a row failed or
        `restart_within` seconds went by without etcd serving again (an etcd that dies again
        within `stays_up` of a restart continues the same streak): then something outside this
        process is wrong (binary, data dir, port, disk) and a fresh controller, started by its
        service manager, is the better next step than more of the same."""
        streak_at, used = 0.0, 0
        while not self._stopping:
            exited = self._exited
            assert exited is not None, "supervise() after start()"
            code = await asyncio.shield(exited)
            if self._stopping:
                return
            now = time.monotonic()
            if not used or now - self._ready_at >= self.stays_up:
                streak_at, used = now, 0
            why = f"exited with {exit_text(code)}"
            said = f" ({self.log_tail(2)})" if code >= 0 else ""  # a signal comes from outside: etcd said nothing
            log.error("embedded etcd (pid %s) %s%s; restarting it on %s", self.pid, why, said, self.endpoint)
            used = await self._restart(why, streak_at, used)

    async def _restart(self, why: str, since: float, used: int) -> int:
        """Start etcd again, with backoff; the attempts used so far in this streak come back."""
        backoff = Backoff(initial=1.0, cap=8.0)  # 5 attempts: about 15 s
        last = ""
        while used < self.restart_attempts and not self._stopping:
            used += 1
            left = since + self.restart_within - time.monotonic()
            if left <= 0:
                last = last or f"not serving within {self.restart_within:g}s"
                break
            try:
                async with asyncio.timeout(left):
                    await self._start_again()
            except TimeoutError:
                last = f"not serving within {self.restart_within:g}s"
                break
            except EtcdError as exc:
                last = str(exc)
                log.warning("embedded etcd restart %d of %d failed: %s", used, self.restart_attempts, last)
                if used >= self.restart_attempts:
                    break
                await asyncio.sleep(min(backoff.next(), max(0.0, since + self.restart_within - time.monotonic())))
                continue
            self.restarts += 1
            log.warning("embedded etcd restarted on %s (pid %s) after it %s", self.endpoint, self.pid, why)
            return used
        if self._stopping:
            return used
        last = last or f"it died again within {self.stays_up:g}s of each restart"
        raise EtcdError(f"embedded etcd {why} and could not be restarted ({used} attempts in "
                        f"{time.monotonic() - since:.0f}s; last: {last}); exiting so that the service "
                        "manager restarts the controller")

    async def _start_again(self) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise EtcdError(NOT_FOUND)
        await self._start_once(os.path.abspath(path))

    def _on_exit(self, proc: subprocess.Popen, exited: asyncio.Future[int]) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        code = proc.wait()  # already exited: reaps without blocking
        if not exited.done():
            exited.set_result(code)

    async def _wait_ready(self, endpoint: str, exited: asyncio.Future[int]) -> None:
        """Until a linearizable read succeeds, racing etcd's exit and a deadline."""
        client = Client(endpoint, timeout=self.ready_timeout)
        try:
            await client.connect()
            ready = asyncio.ensure_future(client.kvstub.Range(
                rpc.RangeRequest(key=b"\0", count_only=True), wait_for_ready=True, timeout=self.ready_timeout))
            done, _ = await asyncio.wait({ready, exited}, timeout=self.ready_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if exited in done:
                ready.cancel()
                raise EtcdError(f"etcd exited with status {exited.result()}: {self.log_tail()}")
            if ready not in done:
                ready.cancel()
                raise EtcdError(f"etcd did not answer within {self.ready_timeout:g}s: {self.log_tail()}")
            try:
                ready.result()
            except Exception as exc:
                raise EtcdError(f"etcd did not answer ({describe(exc)}): {self.log_tail()}") from None
        finally:
            await client.close()

    def log_tail(self, lines: int = 5) -> str:
        """The last lines etcd wrote since our last start, on one line, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        marks = [i for i, line in enumerate(text) if line.startswith(_MARK)]
        tail = [_readable(line) for line in text[marks[-1] + 1 if marks else 0:] if line.strip()]
        return " | ".join(tail[-lines:]) or "(etcd wrote nothing)"

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after `stop_timeout`; the data stays for the next start."""
        self._stopping = True
        await self._terminate()

    async def _terminate(self) -> None:
        proc, exited = self._proc, self._exited
        if proc is None or exited is None:
            return
        if not exited.done():
            _kill(proc, signal.SIGTERM)
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await asyncio.shield(exited)
            except TimeoutError:
                _kill(proc, signal.SIGKILL)
                await exited
        self._proc = None
        self.endpoint = None


def _kill(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
