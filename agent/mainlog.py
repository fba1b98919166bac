"""The daemon's own log (supervisord's `logfile`, `loglevel`, `-n` echo to stdout).

Lines are byte-for-byte supervisord's: ``2026-11-24 17:56:18,123 INFO message\\n`` with
local time, milliseconds truncated, and the level's four-letter name; tools that parse
supervisord.log keep working. The stdlib `logging` module is not used: its records,
handlers and locks buy nothing on a single event loop.

Messages produced before the log exists (config parsing: "Included extra file ...",
warnings about deprecated options) are collected in a `BootLog` and written with
`MainLog.replay` once the log is open, in supervisord's order: criticals, then warnings,
then infos.
"""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .logfiles import RotatingFile, report_error, report_message

__all__ = ["BootLog", "Level", "MainLog", "SYSLOG", "level_from_name"]

# logfile=syslog sends the main log to syslog instead of a file.
SYSLOG = "syslog"


class Level(enum.IntEnum):
    """supervisord's levels; the names are what appears in log lines."""

    CRIT = 50  # needs a human now
    ERRO = 40  # an error that may be ignorable
    WARN = 30  # an issue that is not an error
    INFO = 20  # normal operation
    DEBG = 10  # for users debugging their config
    TRAC = 5  # for developers debugging plugins
    BLAT = 3  # for developers debugging the supervisor itself


_BY_NAME = {
    "critical": Level.CRIT,
    "error": Level.ERRO,
    "warn": Level.WARN,
    "info": Level.INFO,
    "debug": Level.DEBG,
    "trace": Level.TRAC,
    "blather": Level.BLAT,
}


_NAMES = {level: level.name for level in Level}


def level_from_name(name: str) -> Level:
    """The level for a `loglevel=` value. Case-insensitive; supervisord knows no aliases
    (``warning`` is an error there too)."""
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        raise ValueError(f"bad logging level name {name!r}") from None


_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def _timestamp() -> str:
    # localtime + strftime cost about a microsecond; a busy log (an overflowing event
    # pool writes a line per event) formats the same second thousands of times.
    global _second
    now = time.time()
    whole = int(now)
    millis = int((now - whole) * 1000)  # truncated, not rounded, as supervisord
    if _second[0] != whole:
        _second = (whole, time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))
    return f"{_second[1]},{millis:03d}"


def _default_syslog(message: str) -> None:
    import syslog  # only imported when logfile=syslog is used

    syslog.syslog(message)


class _LevelMethods:
    """`critical()` ... `blather()` as shorthands for `log(level, msg)`."""

    def log(self, level: Level, msg: str) -> None:
        raise NotImplementedError

    def critical(self, msg: str) -> None:
        self.log(Level.CRIT, msg)

    def error(self, msg: str) -> None:
        self.log(Level.ERRO, msg)

    def warn(self, msg: str) -> None:
        self.log(Level.WARN, msg)

    def info(self, msg: str) -> None:
        self.log(Level.INFO, msg)

    def debug(self, msg: str) -> None:
        self.log(Level.DEBG, msg)

    def trace(self, msg: str) -> None:
        self.log(Level.TRAC, msg)

    def blather(self, msg: str) -> None:
        self.log(Level.BLAT, msg)


class MainLog(_LevelMethods):
    """The daemon log: an optional rotating file (or syslog) plus an optional stdout echo.

    `path` None writes no file; ``"syslog"`` sends each line of a message to syslog with
    the same timestamp/level prefix (as supervisord's `logfile=syslog`). A path that is
    not a regular file (/dev/stdout, a FIFO) or `maxbytes == 0` never rotates.
    """

    def __init__(
        self,
        path: str | None,
        *,
        maxbytes: int,
        backups: int,
        level: Level,
        echo_stdout: bool = False,
        syslog_fn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.level = Level(level)
        self.echo_stdout = echo_stdout
        self._file: RotatingFile | None = None
        self._syslog: Callable[[str], None] | None = None
        if path == SYSLOG:
            self._syslog = syslog_fn or _default_syslog
        elif path is not None:
            self._file = RotatingFile(path, maxbytes=maxbytes, backups=backups, notify=self._own_trouble)

    def is_enabled(self, level: int) -> bool:
        return level >= self.level

    def log(self, level: Level, msg: str) -> None:
        if level < self.level:
            return
        prefix = f"{_timestamp()} {_NAMES[level]} "
        line = f"{prefix}{msg}\n"
        if self.echo_stdout:
            self._echo(line)
        if self._file is not None:
            self._file.write(line.encode("utf-8", "backslashreplace"))
        if self._syslog is not None:
            # One syslog record per line, each with the full prefix (supervisord does
            # the same, trailing newline included).
            for part in msg.rstrip("\n").split("\n"):
                self._syslog(f"{prefix}{part}\n")

    def log_trouble(self, trouble: bool, message: str) -> None:
        """A log file's writes started failing (an error) or work again (info)."""
        self.log(Level.ERRO if trouble else Level.INFO, message)

    def _own_trouble(self, trouble: bool, message: str) -> None:
        # This very file fails: the line may reach only the stdout echo, so stderr hears it
        # too. The line saying it works again is written to the file itself.
        if trouble and not self.echo_stdout:
            report_message(message)
        self.log_trouble(trouble, message)

    def replay(self, records: Iterable[tuple[Level, str]]) -> None:
        """Write messages collected before the log existed, most severe first (stable
        within a level), which is the order supervisord writes its parse messages in."""
        for level, msg in sorted(records, key=lambda r: -r[0]):
            self.log(level, msg)

    def reopen(self) -> None:
        """SIGUSR2: reopen the file at `path` (a no-op for syslog or no file).
        Raises OSError if the file cannot be opened."""
        if self._file is not None:
            self._file.reopen()

    def clear(self) -> None:
        """clearLog: remove the file and reopen a fresh one. Raises OSError."""
        if self._file is not None:
            self._file.clear()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    @staticmethod
    def _echo(line: str) -> None:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except BrokenPipeError:  # our stdout was a pipe whose reader went away
            pass
        except (OSError, ValueError) as exc:
            report_error("<stdout>", exc)


@dataclass
class BootLog(_LevelMethods):
    """Collects main-log messages produced before the `MainLog` exists.

    It has the same level methods, so config parsing can log into it; afterwards
    ``mainlog.replay(bootlog.records)`` writes them out.
    """

    records: list[tuple[Level, str]] = field(default_factory=list)

    def log(self, level: Level, msg: str) -> None:
        self.records.append((Level(level), msg))
