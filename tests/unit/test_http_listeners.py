"""Binding the HTTP servers' sockets before the loop exists, and basic auth's password rule."""

from __future__ import annotations

import hashlib
import os
import socket
import stat

import pytest

from fleetvisor.agent.config.model import Config, HttpServerConfig, RpcInterfaceConfig, SupervisordConfig
from fleetvisor.agent.daemon import StartupError
from fleetvisor.agent.http.listeners import IN_USE, close_listeners, open_listeners
from fleetvisor.agent.http.server import password_matches
from fleetvisor.agent.mainlog import Level, MainLog

MAIN = RpcInterfaceConfig("supervisor", "supervisor.rpcinterface:make_main_rpcinterface")


@pytest.fixture
def log(tmp_path):
    log = MainLog(str(tmp_path / "main.log"), maxbytes=0, backups=0, level=Level.INFO)
    yield log
    log.close()


def config(*servers: HttpServerConfig, rpc=(MAIN,)) -> Config:
    return Config(path="x", supervisord=SupervisordConfig(), http_servers=servers,
                  rpcinterfaces=tuple(rpc))


def messages(tmp_path) -> list[str]:
    return [line.split(" ", 2)[2] for line in (tmp_path / "main.log").read_text().splitlines()]


def test_unix_socket_lifecycle(tmp_path, log):
    path = str(tmp_path / "s.sock")
    listeners = open_listeners(config(HttpServerConfig("unix", file=path, chmod=0o640)), log)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["main.log", "s.sock"]
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)
    with pytest.raises(StartupError, match="Another program is already listening"):
        open_listeners(config(HttpServerConfig("unix", file=path)), log)
    close_listeners(listeners)
    assert not os.path.exists(path)
    assert messages(tmp_path) == [
        "INFO RPC interface 'supervisor' initialized",
        "CRIT Server 'unix_http_server' running without any HTTP authentication checking"]


def test_stale_socket_is_replaced(tmp_path, log):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(path)
    listeners = open_listeners(config(HttpServerConfig("unix", file=path)), log)
    try:
        assert f"WARN Unlinking stale socket {path}" in messages(tmp_path)
    finally:
        close_listeners(listeners)


def test_closing_leaves_someone_elses_file_alone(tmp_path, log):
    path = tmp_path / "s.sock"
    listeners = open_listeners(config(HttpServerConfig("unix", file=str(path))), log)
    os.unlink(path)
    path.write_text("not ours")
    close_listeners(listeners)
    assert path.read_text() == "not ours"


def test_inet_socket_and_auth_lines(tmp_path, log):
    server = HttpServerConfig("inet", host="127.0.0.1", port=0, username="u", password="p")
    listeners = open_listeners(config(server, rpc=(MAIN, RpcInterfaceConfig("x", "pkg:factory"))), log)
    try:
        host, port = listeners[0].sock.getsockname()
        assert host == "127.0.0.1" and port > 0
    finally:
        close_listeners(listeners)
    assert messages(tmp_path) == [
        "INFO RPC interface 'supervisor' initialized",
        "WARN RPC interface 'x' ignored: its factory pkg:factory is not one this agent can serve"]


def test_busy_port(tmp_path, log):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = HttpServerConfig("inet", host="127.0.0.1", port=busy.getsockname()[1])
        with pytest.raises(StartupError) as exc:
            open_listeners(config(server), log)
    assert str(exc.value) == IN_USE


def test_a_failure_closes_what_was_opened(tmp_path, log):
    good = str(tmp_path / "good.sock")
    bad = HttpServerConfig("unix", file=str(tmp_path / "no" / "such" / "dir.sock"))
    with pytest.raises(StartupError, match=r"socket.error reported errno.ENOENT \(2\)"):
        open_listeners(config(HttpServerConfig("unix", file=good), bad), log)
    assert not os.path.exists(good)


def test_password_rules():
    assert password_matches("secret", "secret")
    assert not password_matches("secret", "Secret")
    digest = hashlib.sha1(b"secret").hexdigest()
    assert password_matches("{SHA}" + digest, "secret")
    assert password_matches("{SHA}" + digest.upper(), "secret")
    assert not password_matches("{SHA}" + digest, "{SHA}" + digest)
    assert not password_matches("{SHA}" + digest, "other")
