"""A small inotify binding on the event loop: "tell me when this file may have changed".

Followers of a log (`tail -f` over HTTP, gRPC log streams) need to wake when the file grows,
is truncated, or is replaced by a rotation. Watching the file's *directory* covers all three
with one watch: the kernel reports IN_MODIFY for writes to a file in it, and IN_CREATE /
IN_MOVED_* when a rotation renames the old file away and creates a new one under the same
name. One inotify descriptor per event loop serves every follower; it is closed when the
last watch goes.

`Watcher.available()` is False where inotify cannot be used (no libc symbol, no permission,
instance limit reached); callers then fall back to a slow timer.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
import weakref
from collections.abc import Callable
from typing import ClassVar

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000

_DIR_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
             | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name
_READ_SIZE = 64 * 1024

Callback = Callable[[], None]


class _Libc:
    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes = [ctypes.c_int]
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.rm_watch = libc.inotify_rm_watch
        self.rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


_libc: _Libc | None = None
_libc_failed = False


def _get_libc() -> _Libc | None:
    global _libc, _libc_failed
    if _libc is None and not _libc_failed:
        try:
            _libc = _Libc()
        except (OSError, AttributeError):
            _libc_failed = True
    return _libc


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


class _Directory:
    __slots__ = ("path", "callbacks")

    def __init__(self, path: str) -> None:
        self.path = path
        self.callbacks: dict[str, set[Callback]] = {}

    def all(self) -> list[Callback]:
        return [cb for cbs in self.callbacks.values() for cb in cbs]


class Watcher:
    """The inotify descriptor of one event loop and the watches on it."""

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watcher]] = weakref.WeakKeyDictionary()

    @classmethod
    def for_loop(cls) -> Watcher:
        loop = asyncio.get_running_loop()
        watcher = cls._by_loop.get(loop)
        if watcher is None or watcher._fd < 0:
            watcher = cls._by_loop[loop] = cls(loop)
        return watcher

    @staticmethod
    def available() -> bool:
        return _get_libc() is not None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fd = -1
        self._dirs: dict[int, _Directory] = {}  # by watch descriptor

    def watch(self, path: str, callback: Callback) -> Callable[[], None]:
        """Call `callback` (on the loop) whenever the file at `path` may have changed, been
        replaced or removed. Returns the function that ends the watch. Raises OSError if the
        directory cannot be watched."""
        libc = _get_libc()
        if libc is None:
            raise OSError(errno.ENOSYS, "inotify is not available")
        directory, name = os.path.split(os.path.abspath(path))
        if self._fd < 0:
            self._fd = _check(libc.init1(os.O_NONBLOCK | os.O_CLOEXEC))
            self._loop.add_reader(self._fd, self._read)
        try:
            wd = _check(libc.add_watch(self._fd, os.fsencode(directory), _DIR_MASK))
        except OSError:
            self._close_if_idle()
            raise
        entry = self._dirs.setdefault(wd, _Directory(directory))
        entry.callbacks.setdefault(name, set()).add(callback)

        def cancel() -> None:
            current = self._dirs.get(wd)
            if current is not entry:
                return  # the directory went away already
            callbacks = entry.callbacks.get(name)
            if callbacks is not None:
                callbacks.discard(callback)
                if not callbacks:
                    del entry.callbacks[name]
            if not entry.callbacks:
                del self._dirs[wd]
                if self._fd >= 0:
                    libc.rm_watch(self._fd, wd)
                self._close_if_idle()

        return cancel

    def _close_if_idle(self) -> None:
        if not self._dirs and self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        due: list[Callback] = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size: offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:  # events were lost: everyone looks again
                due.extend(cb for d in self._dirs.values() for cb in d.all())
                continue
            entry = self._dirs.get(wd)
            if entry is None:
                continue
            if mask & IN_IGNORED:  # the directory itself is gone; so is the watch
                del self._dirs[wd]
                due.extend(entry.all())
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                due.extend(entry.all())
                continue
            name = os.fsdecode(raw.rstrip(b"\0"))
            due.extend(entry.callbacks.get(name, ()))
        for callback in dict.fromkeys(due):  # once each, in order
            callback()
        self._close_if_idle()
