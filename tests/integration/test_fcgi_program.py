"""[fcgi-program:x]: one listening socket, made by the agent, handed to every process as fd 0."""

from __future__ import annotations

import socket
import stat
import sys
import textwrap
from pathlib import Path

from tests.support import free_port, wait_for

from .harness import write_config

SERVER = Path(__file__).with_name("programs") / "fd0_server.py"
HEADER = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
"""


def ask(family: int, address) -> str:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(address)
        return s.makefile().readline().strip()


def test_unix_socket_shared_by_numprocs_with_mode_and_cleanup(tmp_path, daemons):
    path = tmp_path / "app.sock"
    config = write_config(tmp_path, HEADER + textwrap.dedent(f"""
        [fcgi-program:app]
        command={sys.executable} {SERVER}
        socket=unix://%(here)s/app.sock
        socket_mode=0660
        process_name=%(program_name)s_%(process_num)d
        numprocs=2
        startsecs=0
    """))
    d = daemons(config)
    d.wait_line(r"success: app_0 entered RUNNING")
    d.wait_line(r"success: app_1 entered RUNNING")
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o660
    answers = {ask(socket.AF_UNIX, str(path)) for _ in range(20)}
    assert answers <= {"hello from app_0", "hello from app_1"} and answers
    assert d.stop() == 0
    assert not path.exists()  # closed with the last process


def test_tcp_socket(tmp_path, daemons):
    port = free_port()
    config = write_config(tmp_path, HEADER + textwrap.dedent(f"""
        [fcgi-program:tcpapp]
        command={sys.executable} {SERVER}
        socket=tcp://127.0.0.1:{port}
        socket_backlog=16
        startsecs=0
    """))
    d = daemons(config)
    d.wait_line(r"success: tcpapp entered RUNNING")
    assert wait_for(lambda: ask(socket.AF_INET, ("127.0.0.1", port)), 5) == "hello from tcpapp"


def test_socket_that_cannot_be_made_is_a_spawn_error(tmp_path, daemons):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        config = write_config(tmp_path, HEADER + textwrap.dedent(f"""
            [fcgi-program:clash]
            command={sys.executable} {SERVER}
            socket=tcp://127.0.0.1:{port}
            startretries=0
            [program:bystander]
            command=sleep 1000
            startsecs=0
        """))
        d = daemons(config)
        d.wait_line(rf"^INFO spawnerr: Could not create FastCGI socket tcp://127\.0\.0\.1:{port}: ")
        d.wait_line(r"gave up: clash entered FATAL")
        d.wait_line(r"success: bystander entered RUNNING")
    finally:
        busy.close()
