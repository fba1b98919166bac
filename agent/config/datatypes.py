"""Converters from config-file text to typed values.

Each converter takes the (already expanded) option text and returns a value or raises
ValueError with a short message; the parser adds file, section, option and line. The rules
(which words are booleans, which suffixes are byte sizes, which signal numbers exist, ...)
are supervisord 4.3's, so a file it accepts is accepted here with the same meaning.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import signal
import urllib.parse

from ..security.identity import check_name
from .model import AUTO, AutoRestart, HealthAction, ProbeKind

TRUE_WORDS = frozenset({"yes", "true", "on", "1"})
FALSE_WORDS = frozenset({"no", "false", "off", "0"})

# supervisord accepts a signal by any name in the `signal` module that starts with "SIG"
# (aliases such as SIGCLD included) and by the number of any such name; 35..63 are not
# among them, 0 (SIG_DFL) is.
_SIGNALS: dict[str, int] = {
    name: int(value) for name, value in vars(signal).items()
    if name.startswith("SIG") and isinstance(value, int)
}
_SIGNAL_NUMBERS = frozenset(_SIGNALS.values())

# Level names supervisord knows, lowest to highest.
LOG_LEVELS = ("blather", "trace", "debug", "info", "warn", "error", "critical")

# The event type names an [eventlistener:x] may subscribe to (supervisor.events.EventTypes).
EVENT_TYPES = frozenset({
    "EVENT",
    "PROCESS_STATE", "PROCESS_STATE_STOPPED", "PROCESS_STATE_EXITED",
    "PROCESS_STATE_STARTING", "PROCESS_STATE_STOPPING", "PROCESS_STATE_BACKOFF",
    "PROCESS_STATE_FATAL", "PROCESS_STATE_RUNNING", "PROCESS_STATE_UNKNOWN",
    "PROCESS_COMMUNICATION", "PROCESS_COMMUNICATION_STDOUT", "PROCESS_COMMUNICATION_STDERR",
    "PROCESS_LOG", "PROCESS_LOG_STDOUT", "PROCESS_LOG_STDERR",
    "REMOTE_COMMUNICATION",
    "SUPERVISOR_STATE_CHANGE", "SUPERVISOR_STATE_CHANGE_RUNNING",
    "SUPERVISOR_STATE_CHANGE_STOPPING",
    "TICK", "TICK_5", "TICK_60", "TICK_3600",
    "PROCESS_GROUP", "PROCESS_GROUP_ADDED", "PROCESS_GROUP_REMOVED",
    # fleetvisor's own (health checks); stock supervisord refuses to subscribe to them
    "FLEETVISOR_PROCESS_HEALTH", "FLEETVISOR_PROCESS_HEALTH_HEALTHY", "FLEETVISOR_PROCESS_HEALTH_UNHEALTHY",
    "FLEETVISOR_PROCESS_HEALTH_UNKNOWN",
})

_BYTE_SUFFIXES = {"kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}


class Syslog:
    """The deprecated `stdout_logfile=syslog` spelling; the parser rewrites it."""


# -- scalars -------------------------------------------------------------------------------

def boolean(text: str) -> bool:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"not a valid boolean value: {text!r}")


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not a valid integer: {text!r}") from None


def health_probe(text: str) -> tuple[ProbeKind, str]:
    """`exec:COMMAND`, `http://HOST:PORT/PATH` or `tcp:HOST:PORT`."""
    text = text.strip()
    kind, _, rest = text.partition(":")
    if kind == "exec":
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            raise ValueError(f"exec: command {rest!r} does not parse: {exc}") from None
        if not words:
            raise ValueError("exec: needs a command (exec:COMMAND)")
        return ProbeKind.EXEC, rest.strip()
    if kind == "http":
        url = urllib.parse.urlsplit(text)
        try:
            port = url.port
        except ValueError:
            port = None
        if not url.hostname or port is None:
            raise ValueError(f"{text!r} must name a host and a port (http://HOST:PORT/PATH)")
        return ProbeKind.HTTP, text
    if kind == "tcp":
        host, port = host_port(rest, require_host=True)
        return ProbeKind.TCP, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    raise ValueError(f"{text!r} is not a health check: use exec:COMMAND, http://HOST:PORT/PATH or tcp:HOST:PORT")


def health_action(text: str) -> HealthAction:
    try:
        return HealthAction(text.strip().lower())
    except ValueError:
        raise ValueError(f"{text!r} is not a health check action (none or restart)") from None


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ValueError(f"not a number of seconds: {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError(f"not a positive number of seconds: {text!r}")
    return value


def positive_integer(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise ValueError(f"not a positive integer: {text!r}")
    return value


def positive_byte_size(text: str) -> int:
    value = byte_size(text)
    if value < 1:
        raise ValueError(f"not a positive byte size: {text!r}")
    return value


def byte_size(text: str) -> int:
    """`1024`, `10KB`, `50MB`, `1GB` (suffix case-insensitive) as a number of bytes."""
    multiplier = _BYTE_SUFFIXES.get(text[-2:].lower(), 1)
    digits = text[:-2] if multiplier != 1 else text
    try:
        return int(digits) * multiplier
    except ValueError:
        raise ValueError(f"not a valid byte size: {text!r}") from None


def octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal number") from None


def signal_number(text: str) -> int:
    """`TERM`, `SIGTERM`, `sigterm` or `15`."""
    try:
        number = int(text)
    except ValueError:
        name = text.strip().upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name not in _SIGNALS:
            raise ValueError(f"{text!r} is not a valid signal name") from None
        return _SIGNALS[name]
    if number not in _SIGNAL_NUMBERS:
        raise ValueError(f"{text!r} is not a valid signal number")
    return number


def auto_restart(text: str) -> AutoRestart:
    word = text.lower()
    if word in TRUE_WORDS:
        return AutoRestart.ALWAYS
    if word in FALSE_WORDS:
        return AutoRestart.NEVER
    if word == "unexpected":
        return AutoRestart.UNEXPECTED
    raise ValueError(f"invalid 'autorestart' value {text!r} (use true, false or unexpected)")


def logging_level(text: str) -> str:
    level = text.lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"bad logging level name {text!r} (one of {', '.join(LOG_LEVELS)})")
    return level


def name(text: str) -> str:
    """A program, group or process name: these end up in namespecs (`group:name`), in the
    event listener protocol and in web UI URLs, which a space, ':' or '/' would break."""
    stripped = text.strip()
    for char in " :/":
        if char in stripped:
            raise ValueError(f"invalid name {text!r}: it may not contain {char!r}")
    if control := next((c for c in stripped if ord(c) < 32 or ord(c) == 127), None):
        # they also name files (AUTO logs), where a NUL cannot go
        raise ValueError(f"invalid name {text!r}: it may not contain a control character (U+{ord(control):04X})")
    return stripped


def dependency_names(text: str) -> tuple[str, ...]:
    """depends_on: program names, or `GROUP:*` for every process of a group, comma-separated."""
    found = []
    for item in list_of_strings(text):
        group, colon, rest = item.partition(":")
        if colon and rest != "*":
            raise ValueError(f"{item!r} is neither a program name nor GROUP:* (every process of a group)")
        found.append(f"{name(group)}:*" if colon else name(item))
    return tuple(dict.fromkeys(found))


def node_name(text: str) -> str:
    """A node's name: it is part of etcd keys, certificates and namespecs (identity.py's rules)."""
    return check_name("node", text.strip())


# -- lists ---------------------------------------------------------------------------------

def list_of_strings(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")] if text else []


def exit_codes(text: str) -> tuple[int, ...]:
    """`0,2`: exit statuses that count as expected. Empty means none are expected."""
    if not text:
        return ()
    try:
        codes = tuple(int(item) for item in text.split(","))
    except ValueError:
        codes = None
    if codes is None or any(not 0 <= code <= 255 for code in codes):
        raise ValueError(f"not a valid list of exit codes (0-255): {text!r}")
    return codes


def key_value_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """`KEY="val",K2=v2` as ordered pairs; quotes allow commas and spaces in values.

    Tokenised exactly as supervisord does (non-POSIX shlex, so `#` starts a comment and
    quotes stay in tokens until stripped); the token between pairs is not checked, so
    `A=1;B=2` is accepted as it is there. A repeated key keeps its first position and takes
    the last value, as a dict update would.
    """
    lexer = shlex.shlex(text)
    lexer.wordchars += "/.+-():"
    try:
        tokens = list(lexer)
    except ValueError as exc:  # e.g. an unclosed quote
        raise ValueError(f"cannot parse key/value pairs {text!r}: {exc}") from None
    pairs: dict[str, str] = {}
    for start in range(0, len(tokens), 4):
        triple = tokens[start:start + 3]
        if len(triple) != 3 or triple[1] != "=":
            raise ValueError(f"unexpected end of key/value pairs in {text!r}")
        pairs[triple[0]] = triple[2].strip("'\"")
    return tuple(pairs.items())


def event_names(text: str) -> tuple[str, ...]:
    """`PROCESS_STATE,TICK_60` (case-insensitive) as sorted unique names: the order in the
    file does not change what a listener receives, so it must not make a group differ."""
    names = {item.upper() for item in list_of_strings(text)}
    for event in sorted(names):
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event}")
    return tuple(sorted(names))


def labels(text: str) -> tuple[tuple[str, str], ...]:
    """`k=v,k2=v2`, for the [fleetvisor] section."""
    pairs: dict[str, str] = {}
    for item in list_of_strings(text):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*", key):
            raise ValueError(f"not a valid label {item!r} (expected key=value)")
        if key in pairs:
            raise ValueError(f"label {key!r} is given twice")
        pairs[key] = value
    return tuple(pairs.items())


# -- users and groups ----------------------------------------------------------------------

def user_id(text: str) -> int:
    """A user name or uid that exists on this host."""
    try:
        uid = int(text)
    except ValueError:
        try:
            return pwd.getpwnam(text).pw_uid
        except KeyError:
            raise ValueError(f"Invalid user name {text}") from None
    try:
        pwd.getpwuid(uid)
    except (KeyError, OverflowError):
        raise ValueError(f"Invalid user id {text}") from None
    return uid


def group_id(text: str) -> int:
    try:
        gid = int(text)
    except ValueError:
        try:
            return grp.getgrnam(text).gr_gid
        except KeyError:
            raise ValueError(f"Invalid group name {text}") from None
    try:
        grp.getgrgid(gid)
    except (KeyError, OverflowError):
        raise ValueError(f"Invalid group id {text}") from None
    return gid


def checked_user(text: str) -> str:
    """A user name or uid, kept as written once it is known to exist."""
    user_id(text)
    return text


def primary_gid(uid: int) -> int:
    return pwd.getpwuid(uid).pw_gid


def user_and_group(text: str) -> tuple[int, int]:
    """`user` or `user:group` as (uid, gid); gid is -1 (keep) when no group is given."""
    user, colon, group = text.partition(":")
    try:
        return user_id(user), group_id(group) if colon else -1
    except ValueError:
        raise ValueError(f"Invalid user:group definition {text}") from None


# -- addresses -----------------------------------------------------------------------------

def port_number(text: str) -> int:
    port = integer(text)
    if not 1 <= port <= 0xFFFF:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return port


def inet_address(text: str) -> tuple[str, int]:
    """`[host:]port` for [inet_http_server] port=; host '' (also `*`) means every interface."""
    host, colon, port = text.rpartition(":")
    if colon and not port:
        raise ValueError(f"no port number specified in {text!r}")
    try:
        number = port_number(port)
    except ValueError:
        raise ValueError(f"not a valid port number: {text!r}") from None
    host = host.lower()
    return ("" if host == "*" else host), number


def host_port(text: str, *, require_host: bool = False) -> tuple[str, int]:
    """`host:port`, `[v6addr]:port`, `:port` or `port` for the [fleetvisor] section."""
    host, number = inet_address(text.strip())
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if require_host and not host:
        raise ValueError(f"{text!r} does not name a host (expected HOST:PORT)")
    return host, number


def host_port_list(text: str) -> tuple[tuple[str, int], ...]:
    return tuple(host_port(item, require_host=True) for item in list_of_strings(text))


_TCP_SOCKET = re.compile(r"tcp://([^\s:]+):(\d+)")


def fcgi_socket_url(text: str) -> str:
    """`unix:///abs/path` or `tcp://host:port`, normalised (path made canonical, host
    lowercased) so that equal sockets compare equal."""
    if text.startswith("unix://"):
        path = text[len("unix://"):]
        if not os.path.isabs(path):
            raise ValueError(f"unix socket path {path} is not an absolute path")
        return "unix://" + normalize_path(path)
    match = _TCP_SOCKET.fullmatch(text)
    if not match:
        raise ValueError(f"bad socket format {text} (use unix:///path or tcp://host:port)")
    return f"tcp://{match[1].lower()}:{port_number(match[2])}"


def is_spec(text: str) -> str:
    """`package.module:attr`, as an entry point names a callable (not imported here)."""
    if not re.fullmatch(r"[\w.]+\s*(:\s*[\w.]+\s*)?", text):
        raise ValueError(f"{text!r} is not of the form package.module:callable")
    return text.replace(" ", "")


# -- paths ---------------------------------------------------------------------------------

def normalize_path(text: str) -> str:
    return os.path.normpath(os.path.abspath(os.path.expanduser(text)))


def existing_directory(text: str) -> str:
    path = os.path.expanduser(text)
    if not os.path.isdir(path):
        raise ValueError(f"{text} is not an existing directory")
    return path


def existing_dirpath(text: str) -> str:
    """A file path whose directory exists (the file itself is made later)."""
    path = os.path.expanduser(text)
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"the directory named as part of the path {text} does not exist")
    return path


def absolute_dirpath(text: str) -> str:
    """An existing_dirpath made absolute against the current directory, as supervisord does
    for its own log and pid file before it may chdir elsewhere."""
    return normalize_path(existing_dirpath(text))


def main_logfile(text: str) -> str:
    """[supervisord] logfile: a path, or `syslog` to log to syslog instead."""
    path = existing_dirpath(text)
    return path if path == "syslog" else normalize_path(path)


def logfile_name(text: str) -> str | type[Syslog] | None:
    """NONE/OFF -> None, AUTO -> AUTO, SYSLOG -> Syslog, anything else a path."""
    word = text.lower()
    if word in ("none", "off"):
        return None
    if word == "auto":
        return AUTO
    if word == "syslog":
        return Syslog
    return existing_dirpath(text)


def existing_file(text: str) -> str:
    path = normalize_path(text)
    if not os.path.isfile(path):
        raise ValueError(f"{text} is not an existing file")
    return path
