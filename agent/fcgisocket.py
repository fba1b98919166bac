"""The listening socket an [fcgi-program:x] shares with its processes as their fd 0.

As in supervisord, it is made when the first process of the group spawns and closed when the
last one has exited (reference counted), so a group that is stopped holds no port.
"""

from __future__ import annotations

import os
import socket
import stat

from .config.model import FcgiSocketConfig


class FcgiSocket:
    def __init__(self, config: FcgiSocketConfig) -> None:
        self.config = config
        self._sock: socket.socket | None = None
        self._users = 0

    def acquire(self) -> int:
        """The socket's fd for one more process; raises OSError if it cannot be made."""
        if self._sock is None:
            self._sock = self._open()
        self._users += 1
        return self._sock.fileno()

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        self._users = 0
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            path = self._unix_path()
            if path is not None and _is_socket(path):
                os.unlink(path)

    def _unix_path(self) -> str | None:
        url = self.config.url
        return url[len("unix://"):] if url.startswith("unix://") else None

    def _open(self) -> socket.socket:
        backlog = self.config.backlog or socket.SOMAXCONN
        path = self._unix_path()
        if path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                if _is_socket(path):
                    os.unlink(path)  # left by an earlier run
                sock.bind(path)
                if self.config.mode is not None:
                    os.chmod(path, self.config.mode)
                if self.config.owner is not None:
                    os.chown(path, *self.config.owner)
                sock.listen(backlog)
            except OSError:
                sock.close()
                raise
            return sock
        host, _, port = self.config.url[len("tcp://"):].rpartition(":")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), int(port)))
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return sock


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False
