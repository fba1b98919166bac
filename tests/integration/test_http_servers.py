"""[unix_http_server] and [inet_http_server]: binding, stale and busy sockets, permissions,
the startup lines supervisord logs for them, and their removal at exit."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import textwrap
import xmlrpc.client

import pytest
from supervisor.xmlrpc import SupervisorTransport

from tests.support import free_port, wait_for

from .ctlharness import SUPERVISORCTL
from .harness import AGENT, SUPERVISORD, Daemon, write_config

BASE = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
"""
RPC = """
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
"""
UNIX = """
[unix_http_server]
file=%(here)s/s.sock
"""
PROGRAM = """
[program:sleeper]
command=sleep 1000
startsecs=0
"""


def conf(tmp_path, *parts: str, name: str = "supervisord.conf"):
    return write_config(tmp_path, "".join(textwrap.dedent(p) for p in (BASE, *parts)), name)


def rpc(url: str, user: str | None = None, password: str | None = None):
    return xmlrpc.client.ServerProxy("http://127.0.0.1",
                                     transport=SupervisorTransport(user, password, url))


def serving(url: str, **kwargs) -> bool:
    try:
        return rpc(url, **kwargs).supervisor.getState()["statename"] == "RUNNING"
    except (OSError, xmlrpc.client.Error):
        return False


def run_to_exit(config, command=AGENT, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*command, "-c", str(config), "-n", *extra], capture_output=True,
                          text=True, timeout=30, cwd=config.parent)


def test_unix_socket_made_with_mode_and_removed_at_exit(tmp_path, daemons):
    config = conf(tmp_path, UNIX.replace("s.sock", "s.sock\nchmod=0660"), RPC, PROGRAM)
    d = daemons(config)
    sock = tmp_path / "s.sock"
    wait_for(lambda: serving(f"unix://{sock}"), what="the unix server")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("s.sock.")]
    assert d.stop() == 0
    assert not sock.exists()


def test_unix_socket_chown(tmp_path, daemons):
    owner = f"{os.getuid()}:{os.getgid()}"
    config = conf(tmp_path, UNIX.replace("s.sock", f"s.sock\nchown={owner}"), RPC)
    daemons(config)
    wait_for(lambda: serving(f"unix://{tmp_path}/s.sock"), what="the unix server")
    st = os.stat(tmp_path / "s.sock")
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_stale_unix_socket_is_replaced(tmp_path, daemons):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "s.sock"))
    stale.close()  # the file stays; nobody listens on it
    d = daemons(conf(tmp_path, UNIX, RPC))
    wait_for(lambda: serving(f"unix://{tmp_path}/s.sock"), what="the unix server")
    assert any("Unlinking stale socket" in m for m in d.messages())


@pytest.mark.parametrize("command", [AGENT, SUPERVISORD], ids=["agent", "stock"])
def test_busy_unix_socket_refuses_to_start(tmp_path, daemons, command):
    first = daemons(conf(tmp_path, UNIX, RPC))
    wait_for(lambda: serving(f"unix://{tmp_path}/s.sock"), what="the first daemon")
    second = conf(tmp_path, UNIX, RPC, name="second.conf")
    result = run_to_exit(second, command)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: Another program is already listening on a port that one of our HTTP servers "
        "is configured to use.  Shut this program down first before starting supervisord.\n")
    # the first one is untouched
    assert serving(f"unix://{tmp_path}/s.sock")
    assert first.proc.poll() is None


@pytest.mark.parametrize("command", [AGENT, SUPERVISORD], ids=["agent", "stock"])
def test_busy_port_refuses_to_start(tmp_path, command):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = conf(tmp_path, f"[inet_http_server]\nport=127.0.0.1:{port}\n", RPC)
        result = run_to_exit(config, command)
    assert result.returncode == 2
    assert "Error: Another program is already listening on a port" in result.stderr


def test_busy_port_is_reported_on_the_terminal_before_daemonizing(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = conf(tmp_path, f"[inet_http_server]\nport=127.0.0.1:{busy.getsockname()[1]}\n")
        result = subprocess.run([*AGENT, "-c", str(config)], capture_output=True, text=True,
                                timeout=30, cwd=tmp_path)
    assert result.returncode == 2
    assert "Another program is already listening" in result.stderr


def test_unbindable_socket_path(tmp_path):
    config = conf(tmp_path, UNIX.replace("%(here)s/s.sock", "%(here)s/missing/dir/s.sock"))
    outcomes = [run_to_exit(config, command) for command in (SUPERVISORD, AGENT)]
    assert [r.returncode for r in outcomes] == [2, 2]
    assert outcomes[1].stderr.splitlines()[0] == outcomes[0].stderr.splitlines()[0] == (
        "Error: Cannot open an HTTP server: socket.error reported errno.ENOENT (2)")


def startup_lines(messages: list[str]) -> list[str]:
    return [m for m in messages if "RPC interface" in m or "HTTP authentication" in m]


def test_startup_lines_match_supervisord(tmp_path):
    servers = (UNIX + f"\n[inet_http_server]\nport=127.0.0.1:{free_port()}\n"
               + RPC + f"\n[inet_http_server:second]\nport=127.0.0.1:{free_port()}\n"
               "username=u\npassword=p\n")
    lines = []
    for name, command in (("stock", SUPERVISORD), ("agent", AGENT)):
        directory = tmp_path / name
        directory.mkdir()
        d = Daemon(conf(directory, servers), command)
        try:
            wait_for(lambda: serving(f"unix://{directory}/s.sock"), what=f"{name} to serve")
            lines.append(startup_lines(d.messages()))
        finally:
            d.stop()
            d.kill()
    assert lines[1] == lines[0]
    assert "CRIT Server 'unix_http_server' running without any HTTP authentication checking" in lines[1]


@pytest.mark.parametrize("port", [":{port}", "*:{port}", "localhost:{port}"])
def test_inet_address_forms(tmp_path, daemons, port):
    number = free_port()
    config = conf(tmp_path, f"[inet_http_server]\nport={port.format(port=number)}\n", RPC)
    daemons(config)
    wait_for(lambda: serving(f"http://127.0.0.1:{number}"), what="the tcp server")


def test_plaintext_password(tmp_path, daemons):
    number = free_port()
    config = conf(tmp_path, f"[inet_http_server]\nport=127.0.0.1:{number}\nusername=joe\n"
                            "password=plain:text\n", RPC)
    d = daemons(config)
    wait_for(lambda: serving(f"http://127.0.0.1:{number}", user="joe", password="plain:text"),
             what="the tcp server")
    assert not serving(f"http://127.0.0.1:{number}", user="joe", password="plain")
    assert not any("HTTP authentication" in m for m in d.messages())


def test_without_rpcinterface_section_supervisorctl_says_so(tmp_path):
    outputs = []
    for name, command in (("stock", SUPERVISORD), ("agent", AGENT)):
        directory = tmp_path / name
        directory.mkdir()
        config = conf(directory, UNIX, f"[supervisorctl]\nserverurl=unix://{directory}/s.sock\n")
        d = Daemon(config, command)
        try:
            wait_for(lambda: (directory / "s.sock").exists(), what=f"{name} to serve")
            result = subprocess.run([SUPERVISORCTL, "-c", str(config), "status"],
                                    capture_output=True, text=True, timeout=30)
            outputs.append((result.returncode, result.stdout))
        finally:
            d.stop()
            d.kill()
    assert outputs[1] == outputs[0]
    assert outputs[0][0] == 4 and "did not recognize the supervisor namespace" in outputs[0][1]


def test_daemonized_agent_serves_and_cleans_up(tmp_path):
    config = conf(tmp_path, UNIX, RPC, PROGRAM)
    result = subprocess.run([*AGENT, "-c", str(config)], capture_output=True, text=True,
                            timeout=30, cwd=tmp_path)
    assert result.returncode == 0
    url = f"unix://{tmp_path}/s.sock"
    try:
        wait_for(lambda: serving(url), what="the daemon to serve")
        pid = int((tmp_path / "supervisord.pid").read_text())
        assert rpc(url).supervisor.getPID() == pid
        assert rpc(url).supervisor.shutdown() is True
        wait_for(lambda: not (tmp_path / "s.sock").exists(), 30, "the socket to go away")
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30, "the daemon to exit")
    finally:
        if (tmp_path / "supervisord.pid").exists():
            try:
                os.kill(int((tmp_path / "supervisord.pid").read_text()), 15)
            except (ProcessLookupError, ValueError):
                pass


def test_restart_rebinds_the_same_socket(tmp_path, daemons):
    d = daemons(conf(tmp_path, UNIX, RPC, PROGRAM))
    url = f"unix://{tmp_path}/s.sock"
    wait_for(lambda: serving(url), what="the daemon to serve")
    assert rpc(url).supervisor.restart() is True
    d.wait_line(r"supervisord started with pid", count=2)
    wait_for(lambda: serving(url), what="the daemon to serve again")
    assert len(startup_lines(d.messages())) == 4  # RPC + CRIT, twice
    assert re.search(r"Unlinking stale", "\n".join(d.messages())) is None
