"""Reading supervisord.conf into the typed model.

Two stages. `read_ini` turns one file into sections of values that remember their file and
line, following the line rules of the configparser supervisord uses (inline comments need
whitespace before them, indented lines continue a value, `=` or `:` separate, option names
are lowercased, a repeated section or option merges/overrides), so a file means the same
thing to both. `_Builder` then turns the merged sections into a `Config` with supervisord
4.3's defaults, `%(name)s` expansions and checks. Every problem is a ConfigError naming the
file, section, option and line; nothing else escapes for bad input.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import socket
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import datatypes as dt
from .errors import ConfigError
from .model import (
    AUTO,
    Config,
    CtlConfig,
    FcgiSocketConfig,
    FleetvisorConfig,
    GroupConfig,
    GroupKind,
    HealthCheck,
    HttpLimits,
    HttpServerConfig,
    LogConfig,
    ProcessConfig,
    RpcInterfaceConfig,
    SupervisordConfig,
)

__all__ = ["load", "read_ini"]

# Sections a fleet-pushed file may hold: everything that defines process groups.
PROGRAM_SECTION_PREFIXES = ("program:", "group:", "eventlistener:", "fcgi-program:")
DEFAULT_RESULT_HANDLER = "supervisor.dispatchers:default_handler"
RPC_FACTORY_KEY = "supervisor.rpcinterface_factory"
# Options fleetvisor adds to [program:x] and [fcgi-program:x]: stock supervisord ignores them.
HEALTHCHECK_OPTIONS = ("healthcheck_interval", "healthcheck_timeout", "healthcheck_retries",
                       "healthcheck_start_period", "healthcheck_action")
FLEETVISOR_OPTIONS = frozenset(
    {"node", "labels", "grpc_listen", "controllers", "tls_cert", "tls_key", "tls_ca",
     "state_dir", "insecure", "max_numprocs", "max_processes", "max_config_bytes",
     "http_header_timeout", "http_body_timeout", "http_idle_timeout", "http_max_connections_per_client",
     "http_max_body"})


@dataclass(frozen=True)
class Limits:
    """Bounds checked before any per-process work is done, so that no input (numprocs=10**8,
    a huge file) can make a parse allocate or loop without end. Stock supervisord has none;
    every config it accepts that stays within these parses the same. The node's own file
    may raise them in [fleetvisor]."""

    max_numprocs: int = 1000  # numprocs of one [program:x]-like section
    max_processes: int = 10000  # processes (and program sections) in one whole config
    max_config_bytes: int = 4 * 1024 * 1024  # each file read, and all of them together


DEFAULT_LIMITS = Limits()
_LIMIT_OPTIONS = ("max_numprocs", "max_processes", "max_config_bytes")


def load(path: str, *, environ: Mapping[str, str] | None = None,
         extra_files: Sequence[str] = (), host_node_name: str | None = None,
         defer_env: bool = False, limits: Limits | None = None, known_elsewhere: Collection[str] = ()) -> Config:
    """Parse the file named by -c, everything it includes, then `extra_files` (program-level
    sections only, as if included last). Raises ConfigError for anything wrong.

    Environment values may be secrets: no error or warning shows one, it names the
    variable instead (see `_Redactor`). With `defer_env` (a controller checking a config
    that an agent will expand against its own environment) `environ` is not used at all:
    each `%(ENV_X)s` expands to a marker, and an option whose text holds a marker is not
    converted or checked here (it gets its default); the agent checks it when it loads.

    `limits` (default DEFAULT_LIMITS) hold until the main file's [fleetvisor] section sets
    its own max_* options, which then bound the included and extra files and the build.
    `known_elsewhere`: program and group names depends_on may name that these files do not
    define (a controller checking a fleet config: the target nodes' own programs)."""
    environ = {} if defer_env else os.environ if environ is None else environ
    node = platform.node() if host_node_name is None else host_node_name
    names: dict[str, object] = {f"ENV_{k}": v for k, v in environ.items()}
    loader = _Loader(names, limits or DEFAULT_LIMITS, node=node)
    redactor = _Redactor(names, loader)
    main = os.path.abspath(path)
    with redactor:
        loader.read_main(main)
        local = tuple(sorted(n for n in loader.sections if n.startswith(PROGRAM_SECTION_PREFIXES)))
        for extra in extra_files:
            loader.read_extra(os.path.abspath(extra))
        if defer_env:
            names.update({ref: _DEFERRED.format(ref) for ref in redactor.references()})
        config = _Builder(main, loader, names, node, deferred=defer_env, limits=loader.limits,
                          known_elsewhere=known_elsewhere).build()
    return replace(config, warnings=tuple(redactor.text(w) for w in config.warnings), local_sections=local)


# The stand-in for an environment value the controller does not know. NUL never occurs in
# a real environment value, so a text holding it was expanded from a deferred name.
_DEFERRED = "\0{}\0"
_ENV_REFERENCE = re.compile(r"%\((ENV_[^)]*)\)")
_SHORTEST_FOLDED = 4  # shorter values are not searched for in other letter cases


class _Redactor:
    """Takes environment values out of error messages and warnings.

    The values to hide are those of every ENV_ name some option of the files read refers
    to; any expansion that reaches an environment value goes through such a reference
    (a program's own environment= only passes them on). Each occurrence is replaced by the
    reference itself, so `numprocs=%(ENV_SECRET)s` is reported as not a valid integer
    '%(ENV_SECRET)s' (also where repr() escaped it). If a value still shows in another
    letter case, the message is replaced by one that names the variables only. Errors
    about options that expand no environment name keep supervisord's exact text."""

    def __init__(self, names: Mapping[str, object], loader: _Loader) -> None:
        self.names = names
        self.loader = loader

    def references(self) -> set[str]:
        sections = [*self.loader.sections.values(), *self.loader.includes]
        values = [*self.loader.defaults.values(),
                  *(v for s in sections for v in s.options.values())]
        return {m for v in values for m in _ENV_REFERENCE.findall(v.text)}

    def hidden(self) -> dict[str, str]:
        found = {ref: self.names.get(ref) for ref in self.references()}
        return {ref: v for ref, v in found.items() if isinstance(v, str) and v}

    def text(self, message: str) -> str:
        hidden = self.hidden()
        if not hidden:
            return message
        # As written, and as repr() escapes it inside a quoted value.
        forms = [(form, ref) for ref, v in hidden.items() for form in {v, repr(v)[1:-1]}]
        forms.sort(key=lambda fr: -len(fr[0]))
        for form, ref in forms:
            message = message.replace(form, f"%({ref})s")
        folded = message.casefold()
        left = sorted({ref for form, ref in forms
                       if len(form) >= _SHORTEST_FOLDED and form.casefold() in folded})
        if left:
            return (f"a value expanded from {', '.join(left)} is not valid here (the value "
                    f"is not shown)")
        return message

    def __enter__(self) -> _Redactor:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, ConfigError):
            exc.message = self.text(exc.message)
            exc.args = (exc.message,)
            exc.file = exc.file and self.text(exc.file)


# -- stage 1: lines to located values -----------------------------------------------------

@dataclass
class Value:
    text: str
    file: str
    line: int


@dataclass
class Section:
    name: str
    file: str
    line: int
    options: dict[str, Value] = field(default_factory=dict)


_SECTION_HEADER = re.compile(r"\[(?P<name>.+)\]")
_OPTION_LINE = re.compile(r"(?P<key>.*?)\s*[=:]\s*(?P<value>.*)$")
_COMMENT_PREFIXES = (";", "#")


def _comment_start(line: str) -> int | None:
    """Index where a comment starts, if any.

    A line whose first non-blank is ; or # is all comment. Otherwise a prefix counts only
    after whitespace (so `url=http://h/#x` and `a;b` keep their text), found the way
    configparser finds it: round n looks at the n-th occurrence of each prefix and the first
    round with a valid one wins. Mirrored so that odd lines read the same.
    """
    if line.strip().startswith(_COMMENT_PREFIXES):
        return 0
    after = {prefix: -1 for prefix in _COMMENT_PREFIXES}
    while after:
        found: list[int] = []
        for prefix, start in list(after.items()):
            index = line.find(prefix, start + 1)
            if index == -1:
                del after[prefix]
                continue
            after[prefix] = index
            if index == 0 or line[index - 1].isspace():
                found.append(index)
        if found:
            return min(found)
    return None


def program_sections(text: str) -> list[str]:
    """The program-level section names ("program:x", "group:g", ...) a fleet file defines, as
    read_extra compares them with the node's own. Raises ConfigError when it does not parse."""
    return sorted(n for n in read_ini(text, "<fleet config>") if n.startswith(PROGRAM_SECTION_PREFIXES))


def read_ini(text: str, path: str) -> dict[str, Section]:
    """One file's sections, in order of first appearance; [DEFAULT] is kept as a section."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    value: Value | None = None  # the option that indented lines continue
    parts: list[str] = []
    indent = 0

    def finish() -> None:
        if value is not None:
            value.text = "\n".join(parts).rstrip()

    for lineno, line in enumerate(text.split("\n"), start=1):
        cut = _comment_start(line)
        stripped = line[:cut].strip()
        if not stripped:
            # A blank line belongs to a multi-line value; a comment line does not.
            if cut is None and value is not None:
                parts.append("")
            continue
        line_indent = len(line) - len(line.lstrip())
        if value is not None and line_indent > indent:
            parts.append(stripped)
            continue
        indent = line_indent
        finish()
        value = None
        header = _SECTION_HEADER.match(stripped)
        if header:
            name = header["name"]
            current = sections.get(name) or sections.setdefault(name, Section(name, path, lineno))
            continue
        if current is None:
            raise ConfigError(f"text before the first [section] header: {line.strip()!r}",
                              file=path, line=lineno)
        option = _OPTION_LINE.match(stripped)
        if not option or not option["key"]:
            raise ConfigError(f"cannot parse line {line.strip()!r} (expected name=value)",
                              file=path, section=current.name, line=lineno)
        key = option["key"].rstrip().lower()
        value = current.options[key] = Value("", path, lineno)
        parts = [option["value"].strip()]
    finish()
    return sections


def _read_text(path: str, max_bytes: int | None = None, limit: int = 0) -> str:
    """The file's text; with max_bytes (what is left of the `limit` on all files read), a
    file that does not fit is refused after reading at most one byte more than fits."""
    try:
        with open(path, "rb") as fh:
            # Read one byte past the limit, never the whole of a file that is too big.
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"could not find config file {path}", file=path) from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory", file=path) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"could not read config file {path}: {reason}", file=path) from None
    if max_bytes is not None and len(data) > max_bytes:
        raise _limit_error(f"config files are larger than {limit} bytes together",
                           "max_config_bytes", limit, file=path)
    try:
        text = data.decode("utf-8-sig")  # an editor's byte order mark is not content
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file is not UTF-8 text (bad byte at offset {exc.start})",
                          file=path) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\0" in text:  # no path, name or command can hold one; and the parser uses it itself (_DEFERRED)
        raise ConfigError("config file contains a NUL character", file=path,
                          line=text.count("\n", 0, text.index("\0")) + 1)
    return text


def _expand(text: str, names: Mapping[str, object]) -> str:
    """supervisord's expansion: Python %-formatting against a dict of names."""
    if "%" not in text:
        return text
    try:
        return text % names
    except KeyError as exc:
        known = ", ".join(sorted(k for k in names if not k.startswith("ENV_")))
        raise ValueError(f"format string {text!r} contains names ({exc}) which cannot be "
                         f"expanded; available: {known} and ENV_X for environment "
                         f"variables") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"format string {text!r} is badly formatted: {exc}") from None


def _limit_text(message: str, limit: str, value: int) -> str:
    return (f"{message} (limit {limit}={value}; raise it with {limit}= in the node's "
            f"[fleetvisor] section)")


def _limit_error(message: str, limit: str, value: int, **where: Any) -> ConfigError:
    return ConfigError(_limit_text(message, limit, value), **where)


def _limit_value(section: Section, option: str, default: int) -> int:
    """One max_* option of [fleetvisor], read raw: limits are needed before anything is built."""
    value = section.options.get(option)
    if value is None:
        return default
    try:
        number = int(value.text.strip())
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{option} must be a positive integer, not {value.text.strip()!r}",
                          file=value.file, section="fleetvisor", option=option, line=value.line)
    return number


# -- includes -----------------------------------------------------------------------------

class _Loader:
    """Reads the main file and its includes into one merged set of sections."""

    def __init__(self, names: Mapping[str, object], limits: Limits = DEFAULT_LIMITS, *, node: str = "") -> None:
        self.names = names
        self.node = node  # %(host_node_name)s, which include paths may use
        self.limits = limits
        self.bytes_read = 0
        self.sections: dict[str, Section] = {}
        self.defaults: dict[str, Value] = {}
        self.files: list[str] = []  # included and extra files, in read order
        self.warnings: list[str] = []
        self.includes: list[Section] = []  # [include] sections, kept for their references
        self._seen: set[str] = set()

    def read_main(self, path: str) -> None:
        self._read(path, main=True)

    def _text(self, path: str) -> str:
        limit = self.limits.max_config_bytes
        text = _read_text(path, limit - self.bytes_read, limit)
        self.bytes_read += len(text.encode())
        return text

    def _set_limits(self, parsed: dict[str, Section]) -> None:
        section = parsed.get("fleetvisor")
        if section is None:
            return
        self.limits = Limits(**{o: _limit_value(section, o, getattr(self.limits, o))
                                for o in _LIMIT_OPTIONS})

    def read_extra(self, path: str) -> None:
        """A fleet-pushed file: program-level sections only, none already defined."""
        parsed = read_ini(self._text(path), path)
        for section in parsed.values():
            if not section.name.startswith(PROGRAM_SECTION_PREFIXES):
                raise ConfigError("only [program:x], [group:x], [eventlistener:x] and "
                                  "[fcgi-program:x] sections may be pushed", file=path,
                                  section=section.name, line=section.line)
            if section.name in self.sections:
                raise ConfigError(f"section is already defined in "
                                  f"{self.sections[section.name].file}", file=path,
                                  section=section.name, line=section.line)
        self.files.append(path)
        self._merge(parsed)

    def _read(self, path: str, main: bool = False) -> None:
        self._seen.add(_real(path))
        parsed = read_ini(self._text(path), path)
        if main:
            self._set_limits(parsed)
        include = parsed.pop("include", None)
        self._merge(parsed)
        if include is not None:
            self._include(include)

    def _merge(self, parsed: dict[str, Section]) -> None:
        for section in parsed.values():
            if section.name == "DEFAULT":
                self.defaults.update(section.options)
            elif section.name in self.sections:
                self.sections[section.name].options.update(section.options)
            else:
                self.sections[section.name] = section

    def _include(self, include: Section) -> None:
        """Globs relative to the including file, each sorted. Includes may include; a file
        already read is not read again, which also ends include cycles."""
        self.includes.append(include)
        files = include.options.get("files")
        if files is None:
            raise ConfigError("[include] section has no files option", file=include.file,
                              section="include", line=include.line)
        base = _here(include.file)
        try:
            patterns = _expand(files.text, {**self.names, "host_node_name": self.node, "here": base}).split()
        except ValueError as exc:
            raise ConfigError(str(exc), file=files.file, section="include", option="files",
                              line=files.line) from None
        for pattern in patterns:
            pattern = os.path.join(base, pattern)
            matches = sorted(glob.glob(pattern))
            if not matches:
                self.warnings.append(f'No file matches via include "{pattern}"')
            for match in matches:
                # supervisord's reader silently skips what it cannot open, like a directory
                # that a glob such as conf.d/* happens to match.
                if os.path.isdir(match) or _real(match) in self._seen:
                    continue
                self.files.append(match)
                self._read(match)


def _here(path: str) -> str:
    """%(here)s: the directory of the file a value was written in."""
    return os.path.abspath(os.path.dirname(path))


def _real(path: str) -> str:
    try:
        return os.path.realpath(path)
    except ValueError:  # embedded NUL: cannot be opened either, _read_text will say so
        return path


# -- stage 2: sections to the model -------------------------------------------------------

class _Options:
    """One section's options as the builder reads them: looked up with [DEFAULT] as the
    fallback, %-expanded with `names` plus the `here` of the file each value came from,
    converted, and every failure turned into a ConfigError pointing at the value."""

    def __init__(self, section: Section, defaults: Mapping[str, Value],
                 names: Mapping[str, object], deferred: bool = False) -> None:
        self.section = section
        self.defaults = defaults
        self.names = names
        self.deferred = deferred  # ENV_ names expand to markers: see load()

    def with_names(self, names: Mapping[str, object]) -> _Options:
        return _Options(self.section, self.defaults, names, self.deferred)

    def unknown(self, text: str | None) -> bool:
        """Whether `text` was expanded from an environment value only the agent knows."""
        return self.deferred and text is not None and "\0" in text

    def value(self, option: str) -> Value | None:
        return self.section.options.get(option) or self.defaults.get(option)

    def get(self, option: str, default: Any = None, convert: Callable[[str], Any] | None = None,
            *, expand: int = 1, then: Mapping[str, object] | None = None) -> Any:
        """The option's value: expanded `expand` times (supervisord expands some options
        twice, so `%%` there needs doubling again; `then` are names only the later rounds
        know), then converted. A string default is expanded and converted too; any other
        default is returned as is."""
        value = self.value(option)
        if value is None and not isinstance(default, str):
            return default
        text = self.expanded(option, value.text if value is not None else default, value, expand, then)
        if convert and self.unknown(text):
            # Left to the agent; what follows from it is checked with the default.
            if not isinstance(default, str):
                return default
            text = self.expanded(option, default, None, expand, then)
        return self.convert(option, convert, text) if convert else text

    def expanded(self, option: str, text: str, value: Value | None, times: int,
                 then: Mapping[str, object] | None = None) -> str:
        names = {**self.names, "here": _here((value or self.section).file)}
        for round_ in range(times):
            if round_ == 1 and then:
                names = {**names, **then}
            text = self.convert(option, _expand, text, names)
        return text

    def convert(self, option: str | None, func: Callable[..., Any], *args: Any) -> Any:
        try:
            return func(*args)
        except ValueError as exc:
            raise self.error(str(exc), option) from None

    def error(self, message: str, option: str | None = None) -> ConfigError:
        where = (self.value(option) if option else None) or self.section
        return ConfigError(message, file=where.file, section=self.section.name,
                           option=option, line=where.line)


def _cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """A cycle of `graph` as the names along it (the first one again at the end), or []."""
    seen: dict[str, bool] = {}  # True while on the current path, False once done
    for start in sorted(graph):
        if start in seen:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        seen[start] = True
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                seen[path.pop()] = False
            elif seen.get(nxt):
                return [*path[path.index(nxt):], nxt]
            elif nxt not in seen and nxt in graph:
                seen[nxt] = True
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return []


class _Builder:
    def __init__(self, path: str, loader: _Loader, names: dict[str, object], node: str,
                 deferred: bool = False, limits: Limits = DEFAULT_LIMITS,
                 known_elsewhere: Collection[str] = ()) -> None:
        """`names` expand in every section; like supervisord, %(host_node_name)s (`node`) only
        in program-like sections, [include] files, the second expansion of [supervisord]
        environment= and our [fleetvisor]. `known_elsewhere`: see load()."""
        self.known_elsewhere = frozenset(known_elsewhere)
        self.path = path
        self.node = node
        self.limits = limits
        self.process_count = 0  # processes built so far, against limits.max_processes
        self.deferred = deferred
        self.sections = loader.sections
        self.defaults = loader.defaults
        self.files = loader.files
        self.warnings = loader.warnings
        self.names = names

    def options(self, section: Section) -> _Options:
        return _Options(section, self.defaults, self.names, self.deferred)

    def with_prefix(self, prefix: str) -> list[Section]:
        return [s for name, s in self.sections.items() if name.startswith(prefix)]

    def build(self) -> Config:
        if "supervisord" not in self.sections:
            raise ConfigError("the config has no [supervisord] section", file=self.path)
        supervisord = self.supervisord(self.sections["supervisord"])
        # Like supervisord, its own environment is usable as ENV_X in every later section.
        self.names.update({f"ENV_{k}": v for k, v in supervisord.environment})
        return Config(
            path=self.path,
            supervisord=supervisord,
            rpcinterfaces=tuple(self.rpcinterface(s) for s in self.with_prefix("rpcinterface:")),
            groups=self.groups(dict(supervisord.environment)),
            http_servers=self.http_servers(),
            ctl=self.ctl(self.sections.get("supervisorctl")),
            fleetvisor=self.fleetvisor(self.sections.get("fleetvisor")),
            http_limits=self.http_limits(self.sections.get("fleetvisor")),
            included_files=tuple(self.files),
            warnings=tuple(dict.fromkeys(self.warnings)),
        )

    # [supervisord] and the other singletons

    def supervisord(self, section: Section) -> SupervisordConfig:
        o = self.options(section)
        return SupervisordConfig(
            logfile=o.get("logfile", "supervisord.log", dt.main_logfile),
            logfile_maxbytes=o.get("logfile_maxbytes", "50MB", dt.byte_size),
            logfile_backups=o.get("logfile_backups", "10", dt.integer),
            loglevel=o.get("loglevel", "info", dt.logging_level),
            pidfile=o.get("pidfile", "supervisord.pid", dt.absolute_dirpath),
            umask=o.get("umask", "022", dt.octal),
            nodaemon=o.get("nodaemon", "false", dt.boolean),
            silent=o.get("silent", "false", dt.boolean),
            minfds=o.get("minfds", "1024", dt.integer),
            minprocs=o.get("minprocs", "200", dt.integer),
            nocleanup=o.get("nocleanup", "false", dt.boolean),
            childlogdir=o.get("childlogdir", tempfile.gettempdir(), dt.existing_directory),
            user=o.get("user", None, dt.checked_user),
            directory=o.get("directory", None, dt.existing_directory),
            strip_ansi=o.get("strip_ansi", "false", dt.boolean),
            # Expanded twice, as supervisord does for this option (the second time knowing
            # host_node_name, as there).
            environment=o.get("environment", "", dt.key_value_pairs, expand=2,
                              then={"host_node_name": self.node}),
            identifier=o.get("identifier", "supervisor"),
        )

    def rpcinterface(self, section: Section) -> RpcInterfaceConfig:
        o = self.options(section)
        factory = o.get(RPC_FACTORY_KEY)
        if factory is None:
            raise o.error(f"section [{section.name}] does not specify a {RPC_FACTORY_KEY}")
        keys = dict.fromkeys([*section.options, *self.defaults])
        return RpcInterfaceConfig(
            name=section.name.split(":", 1)[1],
            factory=o.convert(RPC_FACTORY_KEY, dt.is_spec, factory),
            options=tuple((k, o.get(k)) for k in keys if k != RPC_FACTORY_KEY),
        )

    def http_servers(self) -> tuple[HttpServerConfig, ...]:
        servers = []
        for section in self.with_prefix("inet_http_server"):
            o = self.options(section)
            username, password = self.credentials(o)
            port = o.get("port")
            if port is None:
                raise o.error(f"section [{section.name}] has no port value", "port")
            host, number = o.convert("port", dt.inet_address, port)
            servers.append(HttpServerConfig(kind="inet", host=host, port=number,
                                            username=username, password=password))
        for section in self.with_prefix("unix_http_server"):
            o = self.options(section)
            path = o.get("file")
            if path is None:
                raise o.error(f"section [{section.name}] has no file value", "file")
            username, password = self.credentials(o)
            servers.append(HttpServerConfig(
                kind="unix",
                file=o.convert("file", dt.normalize_path, path.strip()),
                chmod=o.get("chmod", "0700", dt.octal),
                chown=o.get("chown", None, dt.user_and_group),
                username=username, password=password))
        return tuple(servers)

    @staticmethod
    def credentials(o: _Options) -> tuple[str | None, str | None]:
        username, password = o.get("username"), o.get("password")
        if (username is None) != (password is None):
            missing = "password" if password is None else "username"
            raise o.error(f"section [{o.section.name}] has incomplete authentication: a "
                          f"username and a password must be given together", missing)
        return username, password

    def ctl(self, section: Section | None) -> CtlConfig:
        """[supervisorctl] is only read by clients, so supervisord never rejects a file for
        it; keep what cannot be expanded as written rather than fail."""
        if section is None:
            return CtlConfig()
        o = self.options(section)

        def get(option: str, default: str | None = None) -> str | None:
            try:
                return o.get(option, default)
            except ConfigError:
                return o.value(option).text  # type: ignore[union-attr]

        def path(text: str | None) -> str | None:
            try:
                return dt.normalize_path(text) if text else None
            except ValueError:
                return text

        url = get("serverurl", CtlConfig.serverurl) or ""
        if url.startswith("unix://"):
            url = "unix://" + (path(url[len("unix://"):]) or "")
        return CtlConfig(serverurl=url, username=get("username"), password=get("password"),
                         prompt=get("prompt", CtlConfig.prompt) or "",
                         history_file=path(get("history_file")))

    def fleetvisor(self, section: Section | None) -> FleetvisorConfig | None:
        """Our own section: unlike supervisord's, unknown options are errors, so that a
        typo cannot silently leave a node out of its fleet."""
        if section is None:
            return None
        o = self.options(section).with_names({**self.names, "host_node_name": self.node})
        for option in section.options:
            if option not in FLEETVISOR_OPTIONS:
                raise o.error(f"unknown option (known: {', '.join(sorted(FLEETVISOR_OPTIONS))})",
                              option)
        tls = {k: o.get(k, None, dt.existing_file) for k in ("tls_cert", "tls_key", "tls_ca")}
        given = [k for k, v in tls.items() if v is not None]
        if given and len(given) != len(tls):
            missing = next(k for k, v in tls.items() if v is None)
            raise o.error("tls_cert, tls_key and tls_ca must be set together", missing)
        grpc_listen = o.get("grpc_listen", None, dt.host_port)
        controllers = o.get("controllers", (), dt.host_port_list)
        if controllers and grpc_listen is None:
            # The controller dials the agent back on that address; without it the node would
            # show up in the fleet but could never be driven.
            raise o.error("controllers needs grpc_listen (the address controllers reach this "
                          "agent on)", "controllers")
        return FleetvisorConfig(
            node=o.get("node", socket.gethostname(), dt.node_name),
            labels=o.get("labels", (), dt.labels),
            grpc_listen=grpc_listen,
            controllers=controllers,
            state_dir=o.get("state_dir", None, dt.normalize_path),
            insecure=o.get("insecure", False, dt.boolean),
            **tls,
        )

    def http_limits(self, section: Section | None) -> HttpLimits:
        """The HTTP face's bounds, from [fleetvisor] (whose other options need not be set)."""
        d = HttpLimits()
        if section is None:
            return d
        o = self.options(section)
        return HttpLimits(
            header_timeout=o.get("http_header_timeout", d.header_timeout, dt.positive_seconds),
            body_timeout=o.get("http_body_timeout", d.body_timeout, dt.positive_seconds),
            idle_timeout=o.get("http_idle_timeout", d.idle_timeout, dt.positive_seconds),
            max_connections_per_client=o.get("http_max_connections_per_client", d.max_connections_per_client,
                                             dt.positive_integer),
            max_body=o.get("http_max_body", d.max_body, dt.positive_byte_size))

    # process groups

    def groups(self, base_env: dict[str, str]) -> tuple[GroupConfig, ...]:
        sections = [s for s in self.sections.values()
                    if s.name.startswith(PROGRAM_SECTION_PREFIXES)]
        if len(sections) > self.limits.max_processes:
            raise _limit_error(f"the config has {len(sections)} program sections, more than "
                               f"{self.limits.max_processes}", "max_processes",
                               self.limits.max_processes, file=self.path)
        built: list[tuple[GroupConfig, Section]] = []
        grouped: set[str] = set()
        for section in self.with_prefix("group:"):
            built.append((self.heterogeneous_group(section, grouped), section))
        for section in self.with_prefix("program:"):
            if section.name not in grouped:
                built.append((self.program_group(section, GroupKind.PROGRAM), section))
        for section in self.with_prefix("eventlistener:"):
            built.append((self.listener_group(section), section))
        for section in self.with_prefix("fcgi-program:"):
            if section.name not in grouped:
                built.append((self.fcgi_group(section), section))

        seen: dict[str, Section] = {}
        for group, section in built:
            if group.name in seen:
                raise self.options(section).error(
                    f"group name {group.name!r} is already used by [{seen[group.name].name}] "
                    f"in {seen[group.name].file}")
            seen[group.name] = section
        groups = [self.with_base_env(g, base_env) for g, _ in built]
        groups.sort(key=lambda g: (g.priority, g.name))
        self.check_dependencies(groups)
        return tuple(groups)

    def check_dependencies(self, groups: list[GroupConfig]) -> None:
        """Every depends_on name exists (here, or among `known_elsewhere`: a node's own programs
        when a controller checks a fleet config), and no program depends on itself through
        others. Refused naming the missing name or the cycle."""
        programs: dict[str, set[str]] = {}  # program name -> the program names it depends on
        members: dict[str, set[str]] = {}  # group name -> its program names
        for group in groups:
            for proc in group.processes:
                members.setdefault(group.name, set()).add(proc.program_name)
                programs.setdefault(proc.program_name, set())
        for group in groups:
            for proc in group.processes:
                for dep in proc.depends_on:
                    wanted = dep[:-2] if dep.endswith(":*") else dep
                    found = members.get(wanted) if dep.endswith(":*") else ({dep} if dep in programs else None)
                    if found is None and wanted not in self.known_elsewhere:
                        kind = "group" if dep.endswith(":*") else "program"
                        raise self.program_error(proc.program_name, f"depends on {dep}, but no {kind} named "
                                                 f"{wanted} is defined", "depends_on")
                    programs[proc.program_name] |= found or set()
        cycle = _cycle(programs)
        if cycle:
            raise self.program_error(cycle[0], f"depends_on makes a cycle: {' -> '.join(cycle)}", "depends_on")

    def program_error(self, program: str, message: str, option: str) -> ConfigError:
        section = next((self.sections[k] for k in (f"program:{program}", f"fcgi-program:{program}",
                                                    f"eventlistener:{program}") if k in self.sections), None)
        if section is None:
            return ConfigError(message, file=self.path, option=option)
        return self.options(section).error(message, option)

    @staticmethod
    def with_base_env(group: GroupConfig, base_env: dict[str, str]) -> GroupConfig:
        """[supervisord] environment= goes to every process, under its own settings."""
        if not base_env:
            return group
        procs = []
        for proc in group.processes:
            merged = {**base_env, **proc.env}
            procs.append(replace(proc, environment=tuple(merged.items())))
        return replace(group, processes=tuple(procs))

    def heterogeneous_group(self, section: Section, grouped: set[str]) -> GroupConfig:
        o = self.options(section)
        name = self.section_name(o)
        priority = o.get("priority", "999", dt.integer)
        processes: list[ProcessConfig] = []
        for program in o.get("programs", "", dt.list_of_strings):
            found = [s for s in (f"program:{program}", f"fcgi-program:{program}")
                     if s in self.sections]
            if not found:
                raise o.error(f"[{section.name}] names unknown program or fcgi-program "
                              f"{program!r}", "programs")
            if len(found) > 1:
                raise o.error(f"[{section.name}] name {program!r} is ambiguous (exists as "
                              f"program and fcgi-program)", "programs")
            grouped.add(found[0])
            # As in supervisord 4.3, an fcgi-program listed in a group runs as a plain
            # program: it gets no socket.
            processes += self.processes(self.sections[found[0]], name, GroupKind.PROGRAM)
        return self.group(o, name, priority, processes, GroupKind.PROGRAM)

    def program_group(self, section: Section, kind: GroupKind, **extra: Any) -> GroupConfig:
        o = self.options(section)
        name = self.section_name(o)
        default_priority = "-1" if kind is GroupKind.EVENTLISTENER else "999"
        priority = o.get("priority", default_priority, dt.integer)
        return self.group(o, name, priority, self.processes(section, name, kind), kind,
                          **extra)

    def listener_group(self, section: Section) -> GroupConfig:
        o = self.options(section)
        buffer_size = o.get("buffer_size", "10", dt.integer)
        if buffer_size < 1:
            raise o.error(f"[{section.name}] section sets invalid buffer_size ({buffer_size})",
                          "buffer_size")
        result_handler = o.get("result_handler", DEFAULT_RESULT_HANDLER, dt.is_spec)
        events = o.get("events", "", dt.event_names)
        if not events:
            raise o.error(f'[{section.name}] section requires an "events" line', "events")
        if o.get("redirect_stderr", "false", dt.boolean):
            raise o.error(f"[{section.name}] section sets redirect_stderr=true but this is not "
                          f"allowed because it would interfere with the eventlistener "
                          f"protocol", "redirect_stderr")
        return self.program_group(section, GroupKind.EVENTLISTENER, buffer_size=buffer_size,
                                  events=events, result_handler=result_handler)

    def fcgi_group(self, section: Section) -> GroupConfig:
        o = self.options(section)
        name = self.section_name(o)
        user = o.get("user", None, dt.checked_user)
        backlog = o.get("socket_backlog", None, dt.integer)
        if backlog is not None and not 1 <= backlog <= 65535:
            raise o.error(f"invalid socket_backlog value {backlog} (1-65535)", "socket_backlog")
        owner = o.get("socket_owner", None, dt.user_and_group)
        mode = o.get("socket_mode", None, dt.octal)
        url = o.with_names({**self.names, "program_name": name}).get("socket")
        if not url:
            raise o.error(f'[{section.name}] section requires a "socket" line', "socket")
        if not o.unknown(url):
            url = o.convert("socket", dt.fcgi_socket_url, url)
        if url.startswith("unix://"):
            mode = 0o700 if mode is None else mode
            if owner is None and user is not None:
                uid = dt.user_id(user)
                if uid != os.getuid():
                    owner = (uid, dt.primary_gid(uid))
        elif owner is not None or mode is not None:
            raise o.error("socket_owner and socket_mode may only be used with a unix domain "
                          "socket", "socket_owner" if owner is not None else "socket_mode")
        sock = FcgiSocketConfig(url=url, backlog=backlog, owner=owner, mode=mode)
        return self.program_group(section, GroupKind.FCGI, socket=sock)

    def group(self, o: _Options, name: str, priority: int, processes: Iterable[ProcessConfig],
              kind: GroupKind, **extra: Any) -> GroupConfig:
        procs = tuple(processes)
        seen: set[str] = set()
        for proc in procs:
            if proc.name in seen:
                raise o.error(f"duplicate process name {proc.name!r} in group {name!r}")
            seen.add(proc.name)
        return GroupConfig(name=name, priority=priority, processes=procs, kind=kind, **extra)

    def section_name(self, o: _Options) -> str:
        name = o.convert(None, dt.name, o.section.name.split(":", 1)[1])
        if not name:
            raise o.error(f"section [{o.section.name}] has an empty name")
        return name

    def processes(self, section: Section, group: str, kind: GroupKind) -> list[ProcessConfig]:
        """The processes of one [program:x]-like section, sorted as supervisord sorts them.

        Names follow supervisord: here, program_name, group_name, host_node_name and ENV_X
        everywhere; process_num, numprocs and the section's own environment= keys (as ENV_X)
        only in the options read per process: command, process_name, directory and the
        stdout/stderr log options."""
        o = self.options(section)
        program = self.section_name(o)
        names = {**self.names, "host_node_name": self.node, "program_name": program, "group_name": group}
        o = o.with_names(names)
        stopasgroup = o.get("stopasgroup", "false", dt.boolean)
        killasgroup = o.get("killasgroup", stopasgroup, dt.boolean)
        numprocs = o.get("numprocs", "1", dt.integer)
        start = o.get("numprocs_start", "0", dt.integer)
        # Checked before a single process is expanded: numprocs=10**8 must fail here, at once.
        limits = self.limits
        if numprocs > limits.max_numprocs:
            raise o.error(_limit_text(f"numprocs {numprocs} is more than {limits.max_numprocs}",
                                      "max_numprocs", limits.max_numprocs), "numprocs")
        total = self.process_count + max(numprocs, 0)
        if total > limits.max_processes:
            raise o.error(_limit_text(f"numprocs {numprocs} brings the config to {total} "
                                      f"processes, more than {limits.max_processes}",
                                      "max_processes", limits.max_processes), "numprocs")
        self.process_count += max(numprocs, 0)
        process_name = o.get("process_name", "%(program_name)s", dt.name, expand=0)
        if numprocs > 1 and "%(process_num)" not in process_name:
            raise o.error("%(process_num) must be present within process_name when "
                          "numprocs > 1", "process_name")
        if stopasgroup and not killasgroup:
            raise o.error("cannot set stopasgroup=true and killasgroup=false", "killasgroup")
        serverurl = o.get("serverurl")
        common = dict(
            group=group, program_name=program, kind=kind,
            priority=o.get("priority", "999", dt.integer),
            autostart=o.get("autostart", "true", dt.boolean),
            autorestart=o.get("autorestart", "unexpected", dt.auto_restart),
            startsecs=o.get("startsecs", "1", dt.integer),
            startretries=o.get("startretries", "3", dt.integer),
            exitcodes=o.get("exitcodes", "0", dt.exit_codes),
            stopsignal=o.get("stopsignal", "TERM", dt.signal_number),
            stopwaitsecs=o.get("stopwaitsecs", "10", dt.integer),
            stopasgroup=stopasgroup,
            killasgroup=killasgroup,
            user=o.get("user", None, dt.checked_user),
            umask=o.get("umask", None, dt.octal),
            redirect_stderr=o.get("redirect_stderr", "false", dt.boolean),
            depends_on=o.get("depends_on", "", dt.dependency_names),
            serverurl=AUTO if not serverurl or serverurl.strip().upper() == AUTO else serverurl,
        )
        captures = {ch: (o.get(f"{ch}_capture_maxbytes", "0", dt.byte_size),
                         o.get(f"{ch}_events_enabled", "false", dt.boolean))
                    for ch in ("stdout", "stderr")}

        procs = []
        for num in range(start, start + numprocs):
            per = o.with_names({**names, "process_num": num, "numprocs": numprocs})
            env = per.get("environment", "", dt.key_value_pairs)
            per = per.with_names({**per.names, **{f"ENV_{k}": v for k, v in env}})
            stdout, stderr = (self.channel(per, ch, *captures[ch]) for ch in ("stdout", "stderr"))
            if common["redirect_stderr"]:
                if stderr.logfile not in (AUTO, None):
                    self.warnings.append(
                        f"For [{section.name}], redirect_stderr=true but stderr_logfile is "
                        f"also set; the stderr_logfile is ignored")
                stderr = replace(stderr, logfile=None)
            command = per.get("command")
            if command is None:
                raise o.error(f"program section [{section.name}] does not specify a command",
                              "command")
            procs.append(ProcessConfig(
                name=per.convert("process_name", _expand, process_name, per.names),
                command=command, process_num=num, directory=per.get("directory"),
                environment=env, stdout=stdout, stderr=stderr, healthcheck=self.healthcheck(per, kind),
                **common))
        procs.sort(key=lambda p: (p.priority, p.name))
        return procs

    def healthcheck(self, o: _Options, kind: GroupKind) -> HealthCheck | None:
        """healthcheck= (read per process: a port may follow process_num) and its options."""
        probe = o.get("healthcheck", None, dt.health_probe)
        tuning = [n for n in HEALTHCHECK_OPTIONS if o.value(n) is not None]
        if probe is None:
            if tuning:
                raise o.error("is set, but healthcheck= is not (the check it would tune)", tuning[0])
            return None
        if kind == GroupKind.EVENTLISTENER:
            raise o.error("an event listener cannot have a health check", "healthcheck")
        d = HealthCheck(*probe)
        return replace(d, interval=o.get("healthcheck_interval", d.interval, dt.positive_seconds),
                       timeout=o.get("healthcheck_timeout", d.timeout, dt.positive_seconds),
                       retries=o.get("healthcheck_retries", d.retries, dt.positive_integer),
                       start_period=o.get("healthcheck_start_period", d.start_period, dt.non_negative_seconds),
                       action=o.get("healthcheck_action", d.action, dt.health_action))

    def channel(self, o: _Options, ch: str, capture_maxbytes: int,
                events_enabled: bool) -> LogConfig:
        # The log file name is expanded twice, as supervisord does.
        logfile = o.get(f"{ch}_logfile", AUTO, dt.logfile_name, expand=2)
        maxbytes = o.get(f"{ch}_logfile_maxbytes", "50MB", dt.byte_size)
        syslog = o.get(f"{ch}_syslog", "false", dt.boolean)
        section = o.section.name
        if logfile is dt.Syslog:
            self.warnings.append(f"For [{section}], {ch}_logfile=syslog is deprecated and will "
                                 f"be removed; use {ch}_syslog=true instead")
            logfile, syslog = None, True
        if logfile == AUTO and not maxbytes:
            self.warnings.append(f"For [{section}], AUTO logging is used for {ch}_logfile "
                                 f"without rollover; set {ch}_logfile_maxbytes > 0 so that "
                                 f"it cannot fill the filesystem")
        return LogConfig(logfile=logfile, maxbytes=maxbytes, syslog=syslog,
                         backups=o.get(f"{ch}_logfile_backups", "10", dt.integer),
                         capture_maxbytes=capture_maxbytes, events_enabled=events_enabled)
