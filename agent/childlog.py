"""Where a process's stdout or stderr goes: its log file and/or syslog.

The event loop hands `ChildLog.write` each chunk read from the child's pipe. The chunk is
written as-is (supervisord adds no prefix or timestamp to child logs) with one `write`
call; rotation is decided by counting bytes. When only the file wants the bytes, the loop
calls `splice_from` instead and the kernel moves them from the pipe to the file. `fd` and
`account()` let a caller write to the current descriptor itself.

Also here: `strip_ansi` and `debug_line`, the two transformations supervisord applies to
child output on its way to the logs, and the log readers used by the RPC layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .logfiles import (
    BadArguments,
    Failed,
    LogReadError,
    NoFile,
    Notify,
    RotatingFile,
    read_log,
    tail_log,
)
from .tally import ByteCount

__all__ = [
    "BadArguments",
    "ChildLog",
    "Failed",
    "LogReadError",
    "NoFile",
    "debug_line",
    "read_log",
    "strip_ansi",
    "tail_log",
]

# supervisord's notion of an escape: ESC '[' then everything up to and including the
# first of these terminator bytes. An unterminated escape swallows the rest of the chunk.
_ANSI = re.compile(rb"\x1b\[[^HfABCDRsuJKhlpm]*[HfABCDRsuJKhlpm]?")


def strip_ansi(data: bytes) -> bytes:
    """Remove ANSI escapes as supervisord's `strip_ansi=true` does (chunk by chunk)."""
    return _ANSI.sub(b"", data) if b"\x1b" in data else data


def debug_line(procname: str, channel: str, data: bytes) -> str:
    """The main-log message supervisord writes at debug level for each chunk of output:
    ``'name' stdout output:\\n<data>``, with non-UTF-8 data shown as its bytes repr."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = f"Undecodable: {data!r}"
    return f"{procname!r} {channel} output:\n{text}"


def _default_syslog(message: str) -> None:
    import syslog  # only imported when some program uses stdout_syslog/stderr_syslog

    syslog.syslog(message)


class ChildLog:
    """One output channel's sink: a rotating file (`path`, None for NONE) and/or syslog.

    With `syslog_tag` (the process name) each line of a chunk is also sent to syslog as
    ``"<tag> <line>"``, as supervisord's stdout_syslog/stderr_syslog do.
    """

    def __init__(
        self,
        path: str | None,
        *,
        maxbytes: int,
        backups: int,
        syslog_tag: str | None = None,
        strip_ansi: bool = False,
        syslog_fn: Callable[[str], None] | None = None,
        notify: Notify | None = None,
        counted: ByteCount | None = None,
    ) -> None:
        self.path = path
        self.syslog_tag = syslog_tag
        self.strip_ansi = strip_ansi
        self.counted = counted if counted is not None else ByteCount()  # bytes for the file, for the metrics
        self._syslog = (syslog_fn or _default_syslog) if syslog_tag is not None else None
        self._file = (
            RotatingFile(path, maxbytes=maxbytes, backups=backups, notify=notify) if path is not None else None
        )

    @property
    def fd(self) -> int:
        """The log file's current descriptor, or -1 (no file, or closed). Re-read it after
        every `account()`: rotation replaces it."""
        return self._file.fd if self._file is not None else -1

    def account(self, nbytes: int) -> None:
        """Rotation bookkeeping for `nbytes` the caller wrote to `fd` itself."""
        if self._file is not None:
            self._file.account(nbytes)

    def splice_from(self, pipe: int, count: int) -> int | None:
        """Move up to `count` bytes from the child's pipe straight into the file (see
        `RotatingFile.splice_from`); None when they must be read and `write`n instead: no
        file, or strip_ansi or syslog needing the bytes."""
        if self._file is None or self.strip_ansi or self._syslog is not None:
            return None
        moved = self._file.splice_from(pipe, count)
        if moved:
            self.counted.bytes += moved
        return moved

    def write(self, data: bytes) -> None:
        if self.strip_ansi:
            data = strip_ansi(data)
        if not data:
            return
        if self._file is not None:
            self.counted.bytes += len(data)
            self._file.write(data)
        if self._syslog is not None:
            # Chunk by chunk, like supervisord: a line split across two reads gives two
            # records. Undecodable bytes are escaped rather than dropped.
            text = data.decode("utf-8", "backslashreplace")
            for line in text.rstrip("\n").split("\n"):
                self._syslog(f"{self.syslog_tag} {line}")

    def reopen(self) -> None:
        """SIGUSR2: reopen the file at `path`. Raises OSError if it cannot be opened."""
        if self._file is not None:
            self._file.reopen()

    def clear(self) -> None:
        """clearProcessLogs: remove the file and reopen a fresh one. Raises OSError."""
        if self._file is not None:
            self._file.clear()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
