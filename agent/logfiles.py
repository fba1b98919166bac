"""Pieces shared by the main log and the child logs.

`RotatingFile` is the one writer behind both: it writes through a raw file descriptor (one
`write` per call, no Python buffering to flush) and decides when to rotate by counting the
bytes it wrote, so the hot path never calls `stat` or `tell`. `splice_from` is the other
way in: bytes moved from a pipe by the kernel (`os.splice`), booked the same way.

`read_log` and `tail_log` are the readers behind supervisord's `readLog`/`readProcess*Log`
and `tailProcess*Log` RPCs, with the same offset/length arithmetic.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time
from collections.abc import Callable

__all__ = [
    "BadArguments",
    "Failed",
    "LogReadError",
    "NoFile",
    "Notify",
    "RotatingFile",
    "read_log",
    "report_error",
    "report_message",
    "tail_log",
]

# O_APPEND on every open: a file shared with other writers, or truncated under us by
# `logrotate copytruncate`, keeps being written at its end. It is harmless on ttys and
# pipes, so /dev/stdout needs no special case (Python's `open(..., 'ab')` seeks and fails
# there with ESPIPE, which is why supervisord retries in 'wb').
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC

# An empty pipe raises BlockingIOError rather than waiting (the file side of a splice into
# a regular file never blocks on it).
_SPLICE_FLAGS = os.SPLICE_F_NONBLOCK
# What a file that cannot take a splice answers (no splice_write in its filesystem, as in
# /proc; an append-only inode refusing to drop O_APPEND). It is then only ever written.
_NO_SPLICE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM, errno.EXDEV})


def report_error(path: str | None, exc: BaseException) -> None:
    """Say on stderr that a log write failed; like supervisord, carry on afterwards."""
    report_message(f"cannot write log {path}: {exc}")


def report_message(message: str) -> None:
    """One line on stderr, for what cannot go to a log."""
    try:
        sys.stderr.write(f"fleetvisor: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# Told when a log's writes start failing (True) and when they succeed again (False), once
# each way: a full disk fails every write, and a line per write would flood the main log
# (itself maybe on that disk). By default it goes to stderr.
Notify = Callable[[bool, str], None]


def _notify_stderr(trouble: bool, message: str) -> None:
    report_message(message)


# The paths whose writes are failing, with the bytes dropped since. Kept by path, not by
# file object: a process restarting on a full disk opens a new one per run, and the log
# says so once, not once a run.
_FAILING: dict[str, int] = {}
# A log that could not be opened again (rotation on a full disk or inode table) is retried
# on a later write, at most this often.
REOPEN_RETRY = 1.0


class RotatingFile:
    """An append-only log file that rotates to `path.1` ... `path.N` at `maxbytes`.

    Rotation only applies to regular files with `maxbytes > 0`; anything else (a FIFO, a
    tty, anything under /dev or /proc, `maxbytes == 0`) just grows and is never measured.
    Write errors are reported on stderr and the data is dropped: a full disk must not take
    the event loop down: `notify` hears when writes start failing and when they work again
    (once each way, not per write), and the bytes in between are dropped. A file that cannot
    be opened again after rotation is retried on later writes.
    """

    __slots__ = ("path", "maxbytes", "backups", "notify", "_fd", "_size", "_rotates", "_regular",
                 "_append", "_no_splice", "_lost", "_retry_at")

    def __init__(self, path: str, *, maxbytes: int, backups: int, notify: Notify | None = None) -> None:
        self.path = path
        self.maxbytes = maxbytes
        self.backups = backups
        self.notify = notify or _notify_stderr
        self._lost = False  # closed by a failure, not by close(): reopened on a later write
        self._retry_at = 0.0
        self._fd = -1
        self._size = 0  # bytes in the current file, kept by counting
        self._rotates = False
        self._regular = False  # only regular files are spliced into
        self._append = True  # O_APPEND is set on _fd (see splice_from)
        self._no_splice = False  # splice failed as unsupported: write from now on
        self._open(truncate=False)

    @property
    def fd(self) -> int:
        """The current descriptor (-1 when closed). It changes on rotation and reopen."""
        return self._fd

    def write(self, data: bytes) -> None:
        if not data or (self._fd < 0 and not self._recover(len(data))):
            return
        written = 0
        try:
            if not self._append:
                self._set_append(True)
            view = memoryview(data)
            while view:  # a signal (or a disk filling up) can cut a write short
                moved = os.write(self._fd, view)
                written += moved
                view = view[moved:]
        except OSError as exc:
            self._failed(exc, len(data) - written)
            self.account(written)
            return
        if _FAILING:
            self._succeeded()
        self.account(written)

    def splice_from(self, pipe: int, count: int) -> int | None:
        """Move up to `count` bytes from the non-blocking pipe `pipe` into the file in the
        kernel, so they never enter Python; rotate as `write` would.

        Returns the bytes moved (0: the pipe is at EOF), or None when this file cannot take
        them that way (closed, not a regular file, splice unsupported, a write error): the
        caller then reads and `write`s them, which also reports errors. Raises
        BlockingIOError when the pipe is empty.
        """
        if self._fd < 0 or not self._regular or self._no_splice:
            return None
        if self._rotates and self._size < self.maxbytes:
            count = min(count, self.maxbytes - self._size)  # the file ends at exactly maxbytes
        try:
            # splice() refuses a descriptor with O_APPEND (EINVAL). So the flag is dropped
            # from ours and every splice first seeks to the end, which keeps what O_APPEND is
            # here for: this agent's other writers to the same path (stdout and stderr, or
            # two programs, sharing a file) run on this loop, never between the seek and the
            # splice; a file cut by `logrotate copytruncate` goes on at its new end, where a
            # kept offset would leave a hole. Rotation, reopen and clear open a fresh
            # descriptor (with O_APPEND) and `write` sets the flag again before writing.
            if self._append:
                self._set_append(False)
            os.lseek(self._fd, 0, os.SEEK_END)
            moved = os.splice(pipe, self._fd, count, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno in _NO_SPLICE:
                self._no_splice = True
            return None
        if _FAILING and moved:
            self._succeeded()
        self.account(moved)
        return moved

    def account(self, nbytes: int) -> None:
        """Book `nbytes` written to `fd` by someone else (e.g. `os.splice`); may rotate."""
        if not self._rotates:
            return
        self._size += nbytes
        if self._size >= self.maxbytes:
            try:
                self._rotate()
            except OSError as exc:
                self._lose(exc)

    def _failed(self, exc: OSError, dropped: int) -> None:
        if self.path not in _FAILING:
            _FAILING[self.path] = 0
            self.notify(True, f"cannot write log {self.path}: {exc.strerror or exc}; its output is "
                              "dropped until writes succeed again")
        _FAILING[self.path] += dropped

    def _succeeded(self) -> None:
        dropped = _FAILING.pop(self.path, None)
        if dropped is not None:
            self.notify(False, f"log {self.path} is written again ({dropped} bytes were dropped)")

    def _lose(self, exc: OSError) -> None:
        """The file could not be opened again: retry on a later write."""
        self.close()
        self._lost = True
        self._retry_at = time.monotonic() + REOPEN_RETRY
        self._failed(exc, 0)

    def _recover(self, size: int) -> bool:
        """Open a lost file again, if it is time to try; False: `size` bytes are dropped."""
        if not self._lost:
            return False
        if time.monotonic() >= self._retry_at:
            try:
                self._open(truncate=False)
            except OSError as exc:
                self._lose(exc)
            else:
                return True
        _FAILING[self.path] = _FAILING.get(self.path, 0) + size
        return False

    def reopen(self) -> None:
        """Close and open `path` again: after logrotate moved it, a new file is made.
        Raises OSError when it cannot be opened (it is retried on later writes)."""
        self.close()
        self._open_again()

    def clear(self) -> None:
        """Remove the file and start a new, empty one (clearLog / clearProcessLogs)."""
        self.close()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        self._open_again()

    def _open_again(self) -> None:
        try:
            self._open(truncate=False)
        except OSError:
            self._lost = True
            self._retry_at = time.monotonic() + REOPEN_RETRY
            raise

    def close(self) -> None:
        self._lost = False
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _open(self, *, truncate: bool) -> None:
        fd = os.open(self.path, _APPEND | (os.O_TRUNC if truncate else 0), 0o666)
        try:
            st = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        self._lost = False
        self._append = True
        self._regular = stat.S_ISREG(st.st_mode)
        self._rotates = (
            self.maxbytes > 0 and stat.S_ISREG(st.st_mode) and not _is_special(self.path)
        )
        self._size = st.st_size if self._rotates else 0

    def _set_append(self, on: bool) -> None:
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | os.O_APPEND if on else flags & ~os.O_APPEND)
        self._append = on

    def _rotate(self) -> None:
        # Same names and order as supervisord: .N-1 -> .N, ..., .1 -> .2, file -> .1.
        # backups == 0 keeps no history: the file is simply truncated.
        self.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                _replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
            _replace(self.path, f"{self.path}.1")
        self._open(truncate=True)


def _is_special(path: str) -> bool:
    # /dev/stdout is a regular file when our stdout is redirected to one; "rotating" it
    # would rename the /dev/stdout link itself.
    return os.path.abspath(path).startswith(("/dev/", "/proc/"))


def _replace(src: str, dst: str) -> None:
    try:
        os.replace(src, dst)
    except FileNotFoundError:  # a gap in the chain, or a cleanup script got there first
        pass


# --- reading ---------------------------------------------------------------------------


# The most a tail (gRPC TailLog, the controller's, fleetctl tail -n) asks for: a log tail is
# read into memory and sent as one message, so a bigger ask is refused, not attempted.
MAX_TAIL_BYTES = 4 * 1024 * 1024 - 64 * 1024  # under gRPC's default 4 MiB message size


def tail_bytes_refusal(count: int) -> str | None:
    """Why a tail of `count` bytes is refused (None: it is not)."""
    if count < 0:
        return f"a tail length cannot be negative (got {count})"
    if count > MAX_TAIL_BYTES:
        return f"a tail is limited to {MAX_TAIL_BYTES} bytes (got {count}); page through longer logs with an offset"
    return None


class LogReadError(ValueError):
    """A read the RPC layer turns into a fault; `fault` is the supervisord fault name."""

    fault = "FAILED"


class BadArguments(LogReadError):
    fault = "BAD_ARGUMENTS"


class NoFile(LogReadError):
    fault = "NO_FILE"


class Failed(LogReadError):
    fault = "FAILED"


def read_log(path: str | None, offset: int, length: int) -> bytes:
    """`length` bytes of `path` from `offset`, as supervisord's readLog.

    offset >= 0: read from there, `length` bytes, or to the end when `length` is 0.
    offset < 0: the last `-offset` bytes; `length` must then be 0.
    A negative length is BAD_ARGUMENTS; a missing file NO_FILE; an unreadable one FAILED.
    """
    if path is None or not os.path.exists(path):
        raise NoFile(path)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (offset, length)):
        raise BadArguments()  # 1e300 arrives as a float; supervisord fails with a 500 there
    if (offset < 0 and length != 0) or length < 0:
        raise BadArguments()
    try:
        with open(path, "rb") as f:
            # every position and count is bounded by the file's size first: -10**12 or
            # 10**30 must not reach seek() or read() (supervisord answers those with a 500)
            size = f.seek(0, os.SEEK_END)
            if offset < 0:
                f.seek(max(size + offset, 0))
                return f.read(min(-offset, size))
            if offset >= size:
                return b""
            f.seek(offset)
            return f.read(min(length, size - offset) if length else -1)
    except OSError as exc:
        raise Failed(str(exc)) from exc


def tail_log(path: str | None, offset: int, length: int) -> tuple[bytes, int, bool]:
    """(data, next offset, overflow) as supervisord's tailProcessStdoutLog.

    Returns up to `length` bytes from `offset`; when the file has grown past
    `offset + length` the window jumps to the end of the file and `overflow` is set.
    The next offset is always the file's size. A missing file reads as (b'', 0, False).
    """
    if path is None or not os.path.exists(path):
        return b"", 0, False
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start, count, overflow = _tail_window(size, offset, length)
            count = min(count, max(size - start, 0))  # read() of 10**12 would allocate it first
            if count == 0:
                return b"", size, overflow
            f.seek(start)
            return f.read(count), size, overflow
    except OSError:
        return b"", offset, False


def _tail_window(size: int, offset: int, length: int) -> tuple[int, int, bool]:
    # Kept step for step with supervisord's tailFile so that odd inputs (negative or
    # past-the-end offsets, length 0) give the very same windows.
    overflow = size > offset + length
    if overflow:
        offset = size - 1
    if offset + length > size:
        if offset > size - 1:
            length = 0
        offset = size - length
    return max(offset, 0), max(length, 0), overflow
