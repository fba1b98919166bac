"""The gRPC port across a re-exec: held open, so that a client waits and is not refused.

The HTTP servers' sockets are simply handed over open (sockets.py). grpcio cannot do that: it
serves only sockets it binds itself, and it shuts its own down when it stops, which ends the
listening for every duplicate too. But it binds with SO_REUSEPORT, so a second socket on the
same address joins the same group. The old agent opens one (`hold`) before its gRPC server
stops; from then on it alone queues the new connections, through the exec. The new agent's
server binds the port again and joins the group; the connections queued meanwhile are
accepted from the held socket and relayed, bytes untouched (TLS stays end to end), to the new
server through a unix socket of its own (`Relay`); then the held socket is closed. A relayed
connection lasts as long as its client keeps it.

What remains: a connection whose handshake completes in the instant between the last accept
and that close is reset, unless net.ipv4.tcp_migrate_req = 1 (Linux 5.14 and later), with
which the kernel moves it to the server's own socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from .state import SocketState

GRPC = "grpc"  # SocketState.kind of a held gRPC port (an older agent closes it: it knows only HTTP kinds)
BACKLOG = 1024
MAX_RELAYED = 256  # connections relayed at most; more were never queued in a half-second handover
CHUNK = 65536
UNIX_PATH_MAX = 100  # sun_path is 108 bytes on Linux, less the "unix:" grpcio parses off


def _listening_on(port: int) -> list[socket.socket]:
    """This process's listening TCP sockets on `port` (grpcio's: it does not say which they are),
    as duplicates the caller closes."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if (sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6)
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and sock.getsockname()[1] == port):
                found.append(sock)
                continue
        except OSError:
            pass
        sock.close()
    return found


def hold(port: int) -> list[SocketState]:
    """A socket joining each of grpcio's listening sockets on `port`, to queue connections once
    the server is gone. Raises OSError (the caller goes on without: a short refusal, as before)."""
    held: list[SocketState] = []
    try:
        for server in _listening_on(port):
            with server:
                twin = socket.socket(server.family, socket.SOCK_STREAM)
                try:
                    twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    twin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if server.family == socket.AF_INET6:
                        twin.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                        server.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
                    address = server.getsockname()
                    twin.bind(address)
                    twin.listen(BACKLOG)
                except BaseException:
                    twin.close()
                    raise
                held.append(SocketState(kind=GRPC, fd=twin.detach(), host=address[0], port=port))
    except BaseException:
        close(held)
        raise
    return held


def close(held: list[SocketState]) -> None:
    for state in held:
        with contextlib.suppress(OSError):
            os.close(state.fd)


def relay_path(state_dir: str) -> str | None:
    """Where the new server also listens for the relayed connections (None: too long a path
    for a unix socket; the held socket is then closed at once, resetting what it queued)."""
    path = os.path.join(os.path.abspath(state_dir), "grpc-relay.sock")
    return path if len(path.encode()) <= UNIX_PATH_MAX else None


class Relay:
    """The connections a held socket queued, each piped to the new server's unix socket."""

    def __init__(self, held: list[SocketState], target: str | None) -> None:
        self.held = held
        self.target = target
        self.relayed = 0
        self._pipes: set[asyncio.Task[None]] = set()

    async def drain(self) -> int:
        """Accept what the held sockets queued, start relaying it, and close them. Returns how
        many connections were taken over."""
        for state in self.held:
            with socket.socket(fileno=state.fd) as sock:
                sock.setblocking(False)
                while self.target is not None and self.relayed < MAX_RELAYED:
                    try:
                        conn, _ = sock.accept()
                    except OSError:  # BlockingIOError: nothing more is queued
                        break
                    self.relayed += 1
                    task = asyncio.create_task(self._pipe(conn), name="gRPC relay")
                    self._pipes.add(task)
                    task.add_done_callback(self._pipes.discard)
        self.held = []
        return self.relayed

    async def _pipe(self, conn: socket.socket) -> None:
        assert self.target is not None
        writers: list[asyncio.StreamWriter] = []
        try:
            client_r, client_w = await asyncio.open_connection(sock=conn)
            writers.append(client_w)
            server_r, server_w = await asyncio.open_unix_connection(self.target)
            writers.append(server_w)
            await asyncio.gather(_copy(client_r, server_w), _copy(server_r, client_w))
        except OSError:
            pass
        finally:
            if not writers:
                conn.close()
            for writer in writers:
                writer.close()

    async def close(self) -> None:
        close(self.held)
        self.held = []
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction, until its end; the end is passed on (a half-close stays a half-close)."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
