"""The listening sockets of [unix_http_server] and [inet_http_server].

They are bound before the daemon forks into the background (the event loop does not exist
yet then), so that "port in use" is reported on the terminal with supervisord's message and
exit status 2, and they are served later on the loop. Unix socket files follow supervisord:
made under a temporary name and hard-linked into place, a stale file (nobody answers on it)
is replaced, a live one means another daemon owns it; the file is removed at exit.
"""

from __future__ import annotations

import errno
import os
import pwd
import socket
from dataclasses import dataclass

from ..config.model import Config, HttpServerConfig
from ..daemon import StartupError
from ..mainlog import MainLog

BACKLOG = 1024
MAIN_RPC_FACTORY = "supervisor.rpcinterface:make_main_rpcinterface"
IN_USE = ("Another program is already listening on a port that one of our HTTP servers is "
          "configured to use.  Shut this program down first before starting supervisord.")
_STALE_ATTEMPTS = 5
_PROBE_TIMEOUT = 1.0


@dataclass
class Listener:
    """A bound, listening socket and the server section it belongs to."""

    config: HttpServerConfig
    sock: socket.socket
    # (st_dev, st_ino) of the unix socket file we made, so we only ever remove our own.
    file_identity: tuple[int, int] | None = None

    @property
    def section(self) -> str:
        return f"{self.config.kind}_http_server"

    def close(self) -> None:
        self.sock.close()
        path = self.config.file
        if self.file_identity is not None and path is not None:
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == self.file_identity:
                    os.unlink(path)
            except OSError:
                pass
            self.file_identity = None


def rpc_namespaces(config: Config) -> list[str]:
    """The names of the configured [rpcinterface:x] sections this agent serves."""
    return [rpc.name for rpc in config.rpcinterfaces if rpc.factory == MAIN_RPC_FACTORY]


def open_listeners(config: Config, log: MainLog) -> list[Listener]:
    """Bind every configured HTTP server and log what supervisord logs for it.
    Raises StartupError (supervisord's text) if one cannot be bound."""
    listeners: list[Listener] = []
    try:
        for server in config.http_servers:
            listener = _open(server, log)
            listeners.append(listener)
            for rpc in config.rpcinterfaces:
                if rpc.factory == MAIN_RPC_FACTORY:
                    log.info(f"RPC interface {rpc.name!r} initialized")
                else:
                    log.warn(f"RPC interface {rpc.name!r} ignored: its factory {rpc.factory} "
                             "is not one this agent can serve")
            if server.username is None:
                log.critical(f"Server {listener.section!r} running without any HTTP "
                             "authentication checking")
    except BaseException:
        close_listeners(listeners)
        raise
    return listeners


def close_listeners(listeners: list[Listener]) -> None:
    for listener in listeners:
        listener.close()


def _open(server: HttpServerConfig, log: MainLog) -> Listener:
    try:
        if server.kind == "unix":
            assert server.file is not None
            sock, identity = _bind_unix(server.file, server.chmod, server.chown, log)
            return Listener(server, sock, identity)
        return Listener(server, _bind_inet(server.host or "", server.port or 0))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(IN_USE) from None
        name = errno.errorcode.get(exc.errno or 0)
        detail = f"errno.{name} ({exc.errno})" if name else str(exc.errno)
        raise StartupError(f"Cannot open an HTTP server: socket.error reported {detail}") from None


def _bind_inet(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _bind_unix(path: str, mode: int, owner: tuple[int, int] | None,
               log: MainLog) -> tuple[socket.socket, tuple[int, int]]:
    # Bind under a private name, then hard-link: the link is atomic and fails if the path
    # exists, so two daemons starting at once cannot both think they own it.
    temp = f"{path}.{os.getpid()}"
    for _ in range(_STALE_ATTEMPTS):
        _unlink(temp)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(temp)
            os.chmod(temp, mode)
            try:
                os.link(temp, path)
            except FileExistsError:
                if _answers(path):
                    raise OSError(errno.EADDRINUSE, "address in use") from None
                log.warn(f"Unlinking stale socket {path}")
                _unlink(path)
                sock.close()
                continue
            if owner is not None:
                _chown(path, owner)
            sock.listen(BACKLOG)
            sock.setblocking(False)
            st = os.stat(path)
            return sock, (st.st_dev, st.st_ino)
        except BaseException:
            sock.close()
            raise
        finally:
            _unlink(temp)
    raise OSError(errno.EADDRINUSE, "address in use")


def _answers(path: str) -> bool:
    """Is something listening on this socket file? A refused or failed connect means stale."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _chown(path: str, owner: tuple[int, int]) -> None:
    try:
        os.chown(path, owner[0], owner[1])
    except PermissionError:
        _unlink(path)
        user = pwd.getpwuid(os.geteuid()).pw_name
        raise StartupError(
            f'Not permitted to chown {path} to uid/gid {owner!r}; adjust "sockchown" value in '
            f"config file or on command line to values that the current user ({user}) can "
            "successfully chown") from None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
