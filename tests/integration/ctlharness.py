"""Drive the stock supervisorctl and XML-RPC client against a running daemon.

`Pair` runs the same config under stock supervisord 4.3.0 and under the agent, each in its
own directory, so a test can run one command against both and compare what the user sees
(with pids, times and paths masked).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport, UnixStreamHTTPConnection

from tests.support import free_port, wait_for

from .harness import AGENT, SUPERVISORD, Daemon, write_config

SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")
USER = "admin"
PASSWORD = "s3cret"
SHA_PASSWORD = "{SHA}" + hashlib.sha1(PASSWORD.encode()).hexdigest()

HEADER = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s

[unix_http_server]
file=%(here)s/s.sock

[inet_http_server]
port=127.0.0.1:{port}
username={user}
password={password}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/s.sock
"""


def make_config(directory: Path, programs: str, *, port: int | None = None,
                password: str = SHA_PASSWORD) -> Path:
    header = HEADER.format(port=port or free_port(), user=USER, password=password)
    return write_config(directory, textwrap.dedent(header) + textwrap.dedent(programs))


@dataclass
class Result:
    rc: int
    out: str

    def __iter__(self):
        return iter((self.rc, self.out))

    def masked(self, directory: Path) -> tuple[int, str]:
        return self.rc, mask(self.out, directory)


_MASKS = [
    (re.compile(r"pid \d+"), "pid N"),
    (re.compile(r"uptime (\d+ days?, )?\d+:\d\d:\d\d"), "uptime T"),
    (re.compile(r"[A-Z][a-z]{2} \d\d \d\d:\d\d [AP]M"), "DATE"),
    (re.compile(r"(?m)^\d+$"), "N"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"), "TIME"),
    (re.compile(r"---supervisor-\w+\.log"), "---supervisor-X.log"),
    (re.compile(r"line: \d+"), "line: N"),
]


def mask(text: str, directory: Path) -> str:
    text = text.replace(str(directory), "DIR")
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


class Server:
    """One running daemon (stock or agent) and how to talk to it."""

    def __init__(self, config: Path, command: list[str], env: dict[str, str] | None = None) -> None:
        self.config = config
        self.dir = config.parent
        self.socket = str(self.dir / "s.sock")
        self.port = int(re.search(r"port=127\.0\.0\.1:(\d+)", config.read_text()).group(1))
        self.daemon = Daemon(config, command, env=env)
        wait_for(lambda: os.path.exists(self.socket) and self._answers(), 15, "the daemon to serve")

    def _answers(self) -> bool:
        try:
            self.rpc().supervisor.getState()
        except (OSError, xmlrpc.client.Error):
            return False
        return True

    def rpc(self, *, tcp: bool = False, user: str | None = None,
            password: str | None = None) -> xmlrpc.client.ServerProxy:
        url = f"http://127.0.0.1:{self.port}" if tcp else f"unix://{self.socket}"
        transport = SupervisorTransport(user, password, url)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def ctl(self, *args: str, url: str | None = None, user: str | None = None,
            password: str | None = None, stdin: str | None = None, timeout: float = 30) -> Result:
        argv = [SUPERVISORCTL, "-c", str(self.config)]
        if url is not None:
            argv += ["-s", url]
        if user is not None:
            argv += ["-u", user]
        if password is not None:
            argv += ["-p", password]
        proc = subprocess.run([*argv, *args], input=stdin if stdin is not None else "",
                              capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        return Result(proc.returncode, proc.stdout + proc.stderr)

    def http(self, method: str, path: str, body: bytes = b"", *, tcp: bool = False,
             headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP request on the unix socket (or the inet port): status, headers, body."""
        if tcp:
            conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        else:
            conn = UnixStreamHTTPConnection("localhost", timeout=timeout)
            conn.socketfile = self.socket
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def tcp_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_state(self, name: str, state: str, timeout: float = 15) -> None:
        def reached() -> bool:
            try:
                return self.rpc().supervisor.getProcessInfo(name)["statename"] == state
            except (OSError, xmlrpc.client.Error):  # restarting, or not serving yet
                return False
        wait_for(reached, timeout, f"{name} to be {state}")

    def stop(self) -> int:
        try:
            return self.daemon.stop(30)
        finally:
            self.daemon.kill()


@contextlib.contextmanager
def serving(directory: Path, programs: str) -> Iterator[Server]:
    """An agent running `programs` for the length of a block (a module's fixture, say); when the block ends
    well, the agent's log must show no failure either."""
    server = Server(make_config(directory, programs), AGENT)
    try:
        yield server
        server.daemon.assert_no_failures()
    finally:
        server.stop()


class Pair:
    """The same config under stock supervisord and under the agent."""

    def __init__(self, root: Path, programs: str) -> None:
        self.stock_dir = root / "stock"
        self.agent_dir = root / "agent"
        self.stock_dir.mkdir()
        self.agent_dir.mkdir()
        self.programs = programs
        self.stock = Server(make_config(self.stock_dir, programs), SUPERVISORD)
        try:
            self.agent = Server(make_config(self.agent_dir, programs), AGENT)
        except BaseException:
            self.stock.stop()
            raise

    def both(self, *args: str, **kwargs) -> tuple[tuple[int, str], tuple[int, str]]:
        """Run one supervisorctl command against both daemons at once; masked results
        (stock, agent)."""
        results: dict[str, Result] = {}

        def run(key: str, server: Server) -> None:
            extra = dict(kwargs)
            if extra.get("url") == "TCP":
                extra["url"] = server.tcp_url()
            results[key] = server.ctl(*args, **extra)

        threads = [threading.Thread(target=run, args=("stock", self.stock)),
                   threading.Thread(target=run, args=("agent", self.agent))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return (results["stock"].masked(self.stock_dir), results["agent"].masked(self.agent_dir))

    def same(self, *args: str, **kwargs) -> tuple[int, str]:
        """Run a command against both; assert the masked outcomes are equal; return it."""
        stock, agent = self.both(*args, **kwargs)
        assert agent == stock, f"supervisorctl {' '.join(args)}:\nstock: {stock!r}\nagent: {agent!r}"
        return agent

    def same_many(self, *commands: tuple[str, ...], **kwargs) -> list[tuple[int, str]]:
        """`same` for several commands that do not change anything, run concurrently."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(self.both, *args, **kwargs) for args in commands]
            outcomes = [f.result() for f in futures]
        for args, (stock, agent) in zip(commands, outcomes):
            assert agent == stock, f"supervisorctl {' '.join(args)}:\nstock: {stock!r}\nagent: {agent!r}"
        return [agent for _, agent in outcomes]

    def same_lines(self, *args: str, **kwargs) -> tuple[int, list[str]]:
        """As `same`, but the order of the lines may differ: stock supervisord lists a group's
        results in the order its processes happened to be reaped, which races."""
        (src, sout), (arc, aout) = self.both(*args, **kwargs)
        what = f"supervisorctl {' '.join(args)}:\nstock: {(src, sout)!r}\nagent: {(arc, aout)!r}"
        assert sorted(aout.splitlines()) == sorted(sout.splitlines()), what
        # supervisorctl's status is the last failing result's, so where the order raced the
        # status may too; where both end on the same result it must agree
        if aout.splitlines()[-1:] == sout.splitlines()[-1:]:
            assert arc == src, what
        return arc, sorted(aout.splitlines())

    def for_each(self, fn) -> None:
        for server in (self.stock, self.agent):
            fn(server)

    def rewrite(self, programs: str) -> None:
        """Replace the program sections of both config files (the servers stay the same)."""
        for server in (self.stock, self.agent):
            make_config(server.dir, programs, port=server.port)

    def close(self) -> None:
        for server in (self.agent, self.stock):
            server.stop()


class Streaming:
    """A long-running supervisorctl (tail -f, maintail -f, fg) read as it prints."""

    def __init__(self, server: Server, *args: str, stdin: bool = False) -> None:
        self.proc = subprocess.Popen(
            [SUPERVISORCTL, "-c", str(server.config), *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=server.dir)
        self._out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            with self._lock:
                self._out += chunk

    @property
    def output(self) -> str:
        with self._lock:
            return self._out.decode(errors="replace")

    def wait_for_text(self, text: str, timeout: float = 10) -> None:
        try:
            wait_for(lambda: text in self.output, timeout, f"{text!r} in the output")
        except AssertionError:
            raise AssertionError(f"{text!r} not seen; output so far:\n{self.output}") from None

    def send(self, data: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data.encode())
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def interrupt(self, timeout: float = 10) -> int:
        """Ctrl-C, as a user ends a tail -f; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 10) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
