"""The typed result of parsing a supervisord.conf.

These are plain values: the parser builds them, the supervisor core reads them. Equality is
what `reread`/`update` use to decide whether a group changed, so every field that affects how
a process runs takes part in it.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field


class AutoRestart(enum.Enum):
    NEVER = "false"
    UNEXPECTED = "unexpected"
    ALWAYS = "true"


class ProbeKind(enum.Enum):
    EXEC = "exec"
    HTTP = "http"
    TCP = "tcp"


class HealthAction(enum.Enum):
    NONE = "none"
    RESTART = "restart"  # a liveness check: restart the process once it turns unhealthy


@dataclass(frozen=True)
class HealthCheck:
    """healthcheck= and the healthcheck_* options of a [program:x]: a probe of a RUNNING process,
    beyond what supervisord can tell (that it stayed up for startsecs). Stock supervisord
    ignores these options."""

    kind: ProbeKind
    target: str  # the command (exec), the URL (http) or HOST:PORT (tcp)
    interval: float = 10.0  # seconds from one probe's end to the next one's start
    timeout: float = 5.0  # seconds a probe may take; longer is a failure
    retries: int = 3  # failures in a row before the process is unhealthy
    start_period: float = 0.0  # seconds after a start in which failures do not count
    action: HealthAction = HealthAction.NONE


class GroupKind(enum.Enum):
    PROGRAM = "program"
    EVENTLISTENER = "eventlistener"
    FCGI = "fcgi-program"


# A log file value of AUTO: a file named after the process in childlogdir, made at spawn.
AUTO = "AUTO"


@dataclass(frozen=True)
class LogConfig:
    """One output channel (stdout or stderr) of a process."""

    logfile: str | None = AUTO  # a path, AUTO, or None for NONE
    maxbytes: int = 50 * 1024 * 1024
    backups: int = 10
    capture_maxbytes: int = 0
    events_enabled: bool = False
    syslog: bool = False


@dataclass(frozen=True)
class ProcessConfig:
    """One process: a [program:x] with numprocs=3 yields three of these."""

    name: str
    command: str
    group: str = ""
    program_name: str = ""
    process_num: int = 0
    priority: int = 999
    autostart: bool = True
    autorestart: AutoRestart = AutoRestart.UNEXPECTED
    startsecs: int = 1
    startretries: int = 3
    exitcodes: tuple[int, ...] = (0,)
    stopsignal: int = int(signal.SIGTERM)
    stopwaitsecs: int = 10
    stopasgroup: bool = False
    killasgroup: bool = False
    user: str | None = None
    directory: str | None = None
    umask: int | None = None
    environment: tuple[tuple[str, str], ...] = ()
    serverurl: str | None = AUTO
    redirect_stderr: bool = False
    stdout: LogConfig = field(default_factory=LogConfig)
    stderr: LogConfig = field(default_factory=LogConfig)
    # Set for the processes of an [eventlistener:x] or [fcgi-program:x] section only.
    kind: GroupKind = GroupKind.PROGRAM
    healthcheck: HealthCheck | None = None
    # Programs (or "GROUP:*") that must be ready (RUNNING, or healthy where they have a health
    # check) before this process starts; stock supervisord ignores the option.
    depends_on: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment)


@dataclass(frozen=True)
class FcgiSocketConfig:
    """The socket an [fcgi-program:x] shares with its processes as fd 0."""

    url: str  # "unix:///path" or "tcp://host:port", as written after expansion
    backlog: int | None = None
    owner: tuple[int, int] | None = None  # (uid, gid)
    mode: int | None = None


@dataclass(frozen=True)
class GroupConfig:
    """A process group: a [program:x] (group of its numprocs), a [group:x], an
    [eventlistener:x] pool or an [fcgi-program:x]."""

    name: str
    priority: int
    processes: tuple[ProcessConfig, ...]
    kind: GroupKind = GroupKind.PROGRAM
    # eventlistener pools only
    buffer_size: int = 10
    events: tuple[str, ...] = ()
    result_handler: str = "supervisor.dispatchers:default_handler"
    # fcgi-program only
    socket: FcgiSocketConfig | None = None


@dataclass(frozen=True)
class HttpServerConfig:
    """[unix_http_server] or [inet_http_server]."""

    kind: str  # "unix" or "inet"
    # unix
    file: str | None = None
    chmod: int = 0o700
    chown: tuple[int, int] | None = None  # (uid, gid); gid -1 keeps the group
    # inet
    host: str | None = None  # "" means all interfaces
    port: int | None = None
    username: str | None = None
    password: str | None = None  # plaintext, or "{SHA}hexdigest"


@dataclass(frozen=True)
class CtlConfig:
    """[supervisorctl]: read by clients, kept so the whole file round-trips."""

    serverurl: str = "http://localhost:9001"
    username: str | None = None
    password: str | None = None
    prompt: str = "supervisor"
    history_file: str | None = None


@dataclass(frozen=True)
class RpcInterfaceConfig:
    name: str
    factory: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HttpLimits:
    """Bounds on the HTTP face's connections ([fleetvisor] http_* options; agent/http/guard.py
    enforces them)."""

    header_timeout: float = 10.0  # seconds for a request's headers once it has begun
    body_timeout: float = 60.0  # seconds for an XML-RPC body to arrive
    idle_timeout: float = 75.0  # seconds a connection may sit between requests
    max_connections_per_client: int = 32  # open TCP connections per client address
    max_body: int = 8 * 1024 * 1024  # bytes of an XML-RPC request body


@dataclass(frozen=True)
class FleetvisorConfig:
    """[fleetvisor]: fleet membership of this node. Stock supervisord ignores the section."""

    node: str
    labels: tuple[tuple[str, str], ...] = ()
    grpc_listen: tuple[str, int] | None = None
    controllers: tuple[tuple[str, int], ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    state_dir: str | None = None
    insecure: bool = False  # serve gRPC in plaintext off loopback, to anyone who reaches it


@dataclass(frozen=True)
class SupervisordConfig:
    """[supervisord] with defaults; command-line flags override these after parsing."""

    logfile: str = "supervisord.log"  # made absolute against the cwd at parse time
    logfile_maxbytes: int = 50 * 1024 * 1024
    logfile_backups: int = 10
    loglevel: str = "info"  # critical error warn info debug trace blather
    pidfile: str = "supervisord.pid"
    umask: int = 0o022
    nodaemon: bool = False
    silent: bool = False
    minfds: int = 1024
    minprocs: int = 200
    nocleanup: bool = False
    childlogdir: str = "/tmp"
    user: str | None = None
    directory: str | None = None
    strip_ansi: bool = False
    environment: tuple[tuple[str, str], ...] = ()
    identifier: str = "supervisor"


@dataclass(frozen=True)
class Config:
    """A whole parsed configuration: the file named by -c and everything it includes."""

    path: str
    supervisord: SupervisordConfig
    groups: tuple[GroupConfig, ...] = ()
    http_servers: tuple[HttpServerConfig, ...] = ()
    ctl: CtlConfig = field(default_factory=CtlConfig)
    rpcinterfaces: tuple[RpcInterfaceConfig, ...] = ()
    fleetvisor: FleetvisorConfig | None = None
    included_files: tuple[str, ...] = ()
    # The program-level sections ("program:x", "group:g", ...) of the node's own files, not of
    # fleet-pushed ones: a pushed config may not define them again.
    local_sections: tuple[str, ...] = ()
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    # Problems worth a line in the main log but not worth refusing the file for.
    warnings: tuple[str, ...] = ()

    def group(self, name: str) -> GroupConfig | None:
        return next((g for g in self.groups if g.name == name), None)
