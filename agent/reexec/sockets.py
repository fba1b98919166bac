"""The HTTP servers' listening sockets, handed over open.

A listening socket that stays open across the exec keeps queueing connections while no
agent accepts them: a client waits a moment and is never refused. The old agent keeps a
duplicate of each descriptor (its HTTP servers close theirs when they stop), the new one
takes them back by the server section they belong to.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace

from ..config.model import Config, HttpServerConfig
from ..http.listeners import Listener, close_listeners, open_listeners
from ..mainlog import MainLog
from .grpcport import GRPC
from .state import SocketState


def keep_sockets(listeners: list[Listener]) -> list[SocketState]:
    """Duplicates of the listening descriptors, to outlive the HTTP servers' shutdown."""
    kept = []
    for listener in listeners:
        server = listener.config
        kept.append(SocketState(kind=server.kind, fd=os.dup(listener.sock.fileno()), host=server.host,
                                port=server.port, file=server.file, file_identity=listener.file_identity))
    return kept


def _matches(kept: SocketState, server: HttpServerConfig) -> bool:
    return (kept.kind, kept.host, kept.port, kept.file) == (server.kind, server.host, server.port, server.file)


def adopt_sockets(config: Config, kept: list[SocketState], log: MainLog) -> list[Listener]:
    """A Listener for each configured HTTP server: the handed-over socket where one matches,
    a fresh one otherwise (the config's servers are the same unless someone edited the file
    between the check and the exec). Handed-over sockets nobody wants are closed."""
    unused = [k for k in kept if k.kind != GRPC]  # the gRPC server takes its own (grpcport.py)
    listeners: list[Listener] = []
    fresh = []
    for server in config.http_servers:
        match = next((k for k in unused if _matches(k, server)), None)
        if match is None:
            fresh.append(server)
            continue
        unused.remove(match)
        sock = socket.socket(fileno=match.fd)  # family and type are read from the descriptor
        os.set_inheritable(match.fd, False)
        sock.setblocking(False)
        listeners.append(Listener(server, sock, match.file_identity))
    for k in unused:
        os.close(k.fd)
    if fresh:
        try:
            listeners += open_listeners(replace(config, http_servers=tuple(fresh)), log)
        except BaseException:
            close_listeners(listeners)
            raise
    return listeners
