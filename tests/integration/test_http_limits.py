"""The HTTP face's bounds (issue 15, items 7 and 8): half-sent requests and idle connections
are closed after their timeouts, one client address cannot hold more than its cap, the
stock supervisorctl keeps answering through such a flood, and an oversized XML-RPC body is
refused with a clear HTTP error before it is read."""

from __future__ import annotations

import socket
import subprocess
import textwrap
import time

from tests.support import free_port, wait_for

from .ctlharness import SUPERVISORCTL
from .harness import Daemon, write_config

CAP = 20


def start(tmp_path, daemons, **limits: str):
    port = free_port()
    options = "".join(f"{option} = {value}\n" for option, value in limits.items())
    body = textwrap.dedent(f"""
        [supervisord]
        logfile=%(here)s/main.log
        pidfile=%(here)s/supervisord.pid
        childlogdir=%(here)s
        [inet_http_server]
        port=127.0.0.1:{port}
        [supervisorctl]
        serverurl=http://127.0.0.1:{port}
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [fleetvisor]
        {{options}}
        [program:sleeper]
        command=sleep 1000
        startsecs=0
        """)
    config = write_config(tmp_path, body.replace("{options}", options))
    d: Daemon = daemons(config)

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False
    wait_for(answers, what="the HTTP server")
    return config, port, d


def connect(port: int, source: str = "127.0.0.2") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed `sock` (reads EOF or a reset), without blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def status(config) -> subprocess.CompletedProcess:
    return subprocess.run([SUPERVISORCTL, "-c", str(config), "status"], capture_output=True,
                          text=True, timeout=30)


def test_half_sent_flood_is_capped_and_timed_out_while_supervisorctl_answers(tmp_path, daemons):
    config, port, _ = start(tmp_path, daemons, http_header_timeout="2",
                            http_max_connections_per_client=str(CAP))
    flood = []
    try:
        for _ in range(10 * CAP):
            sock = connect(port)
            sock.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Le")  # and never more
            flood.append(sock)
        # those over the cap are closed at once, the rest are held until the header timeout
        wait_for(lambda: sum(closed_by_server(s) for s in flood) >= 9 * CAP, timeout=10,
                 what="connections over the cap closed")
        result = status(config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "sleeper" in result.stdout and "RUNNING" in result.stdout
        wait_for(lambda: all(closed_by_server(s) for s in flood), timeout=15,
                 what="half-sent requests closed after the header timeout")
        result = status(config)
        assert result.returncode == 0 and "RUNNING" in result.stdout
    finally:
        for sock in flood:
            sock.close()


def test_idle_connection_is_closed_after_the_idle_timeout(tmp_path, daemons):
    config, port, _ = start(tmp_path, daemons, http_idle_timeout="1")
    idle = connect(port, "127.0.0.1")
    kept = connect(port, "127.0.0.1")
    try:
        # a connection that served one request is idle afterwards, and closed the same way
        kept.sendall(b"GET /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: b"400" in kept.recv(4096), what="the answer")
        started = time.monotonic()
        wait_for(lambda: closed_by_server(idle) and closed_by_server(kept), timeout=15,
                 what="idle connections closed")
        assert time.monotonic() - started < 10
        assert status(config).returncode == 0
    finally:
        idle.close()
        kept.close()


def test_oversized_xmlrpc_body_is_refused_before_it_is_read(tmp_path, daemons):
    config, port, _ = start(tmp_path, daemons)
    size = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        sock.sendall(b"<" * 65536)
        answer = b""
        while b"\r\n\r\n" not in answer or b"limit" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"8388608-byte limit" in answer
    result = status(config)
    assert result.returncode == 0 and "RUNNING" in result.stdout
