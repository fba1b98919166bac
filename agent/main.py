"""`fleetvisor-agent`: supervisord's command line, startup sequence and restart loop."""

from __future__ import annotations

import asyncio
import dataclasses
import getopt
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import datatypes
from .config.errors import ConfigError
from .config.model import Config
from .config.parser import load
from .config.search import find_config_file
from .daemon import StartupError, daemonize, drop_privileges, raise_rlimits, remove_quietly, write_pidfile
from .fleetconfig import FleetConfig, RevisionStore, state_dir_of
from .http.listeners import Listener, close_listeners, open_listeners
from .http.server import HttpFace
from .leftovers import Ledger, stop_survivors
from .mainlog import BootLog, MainLog, level_from_name
from .operations import SUPERVISOR_VERSION  # the version clients see
from .states import SupervisorState
from .supervisor import Supervisor, clear_auto_logs

if TYPE_CHECKING:
    from .security.tlsfiles import TlsMaterial  # grpc: imported only where served

# The first line depends on the name the agent was started under: as `supervisord` (a symlink
# or a copy of the entry point) its usage begins exactly as supervisord's does.
TITLES = {"supervisord": "supervisord -- run a set of applications as daemons.",
          None: "fleetvisor-agent -- run a set of applications as daemons (a drop-in supervisord)."}

USAGE = """{title}

Usage: {program} [options]

Options:
-c/--configuration FILENAME -- configuration file path (searches if not given)
-n/--nodaemon -- run in the foreground (same as 'nodaemon=true' in config file)
-s/--silent -- no logs to stdout (maps to 'silent=true' in config file)
-h/--help -- print this usage message and exit
-v/--version -- print the supervisord version implemented and exit
-u/--user USER -- run as this user (or numeric uid)
-m/--umask UMASK -- use this umask for daemon subprocess (default is 022)
-d/--directory DIRECTORY -- directory to chdir to when daemonized
-l/--logfile FILENAME -- use FILENAME as logfile path
-y/--logfile_maxbytes BYTES -- use BYTES to limit the max size of logfile
-z/--logfile_backups NUM -- number of backups to keep when max bytes reached
-e/--loglevel LEVEL -- use LEVEL as log level (debug,info,warn,error,critical)
-j/--pidfile FILENAME -- write a pid file for the daemon process to FILENAME
-i/--identifier STR -- identifier used for this instance
-q/--childlogdir DIRECTORY -- the log directory for child process logs
-k/--nocleanup --  prevent the removal of old automatic child log files at startup
-a/--minfds NUM -- the minimum number of file descriptors for start success
-t/--strip_ansi -- strip ansi escape codes from process output
--minprocs NUM  -- the minimum number of processes available for start success
--profile_options OPTIONS -- accepted for compatibility and ignored

"""

SHORT_OPTS = "c:nshvu:m:d:l:y:z:e:j:i:q:ka:t?"
LONG_OPTS = ["configuration=", "nodaemon", "silent", "help", "version", "user=", "umask=",
             "directory=", "logfile=", "logfile_maxbytes=", "logfile_backups=", "loglevel=",
             "pidfile=", "identifier=", "childlogdir=", "nocleanup", "minfds=", "strip_ansi",
             "minprocs=", "profile_options="]

# flag -> ([supervisord] field, converter); flags without a value set the field to True.
_OVERRIDES: dict[str, tuple[str, Callable[[str], object] | None]] = {
    "-n": ("nodaemon", None), "--nodaemon": ("nodaemon", None),
    "-s": ("silent", None), "--silent": ("silent", None),
    "-k": ("nocleanup", None), "--nocleanup": ("nocleanup", None),
    "-t": ("strip_ansi", None), "--strip_ansi": ("strip_ansi", None),
    "-u": ("user", str), "--user": ("user", str),
    "-m": ("umask", datatypes.octal), "--umask": ("umask", datatypes.octal),
    "-d": ("directory", datatypes.existing_directory), "--directory": ("directory", datatypes.existing_directory),
    "-l": ("logfile", datatypes.main_logfile), "--logfile": ("logfile", datatypes.main_logfile),
    "-y": ("logfile_maxbytes", datatypes.byte_size), "--logfile_maxbytes": ("logfile_maxbytes", datatypes.byte_size),
    "-z": ("logfile_backups", int), "--logfile_backups": ("logfile_backups", int),
    "-e": ("loglevel", datatypes.logging_level), "--loglevel": ("loglevel", datatypes.logging_level),
    "-j": ("pidfile", datatypes.absolute_dirpath), "--pidfile": ("pidfile", datatypes.absolute_dirpath),
    "-i": ("identifier", str), "--identifier": ("identifier", str),
    "-q": ("childlogdir", datatypes.existing_directory), "--childlogdir": ("childlogdir", datatypes.existing_directory),
    "-a": ("minfds", int), "--minfds": ("minfds", int),
    "--minprocs": ("minprocs", int),
}


class UsageError(Exception):
    pass


@dataclass
class Options:
    configfile: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # SupervisordConfig fields, converted


def parse_args(argv: Sequence[str]) -> Options | str:
    """Options, or the text to print and exit 0 with (help, version)."""
    try:
        pairs, args = getopt.gnu_getopt(list(argv), SHORT_OPTS, LONG_OPTS)
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    if args:
        raise UsageError(f"positional arguments are not supported: {args}")
    opts = Options()
    for flag, value in pairs:
        if flag in ("-h", "-?", "--help"):
            return usage(sys.argv[0])
        if flag in ("-v", "--version"):
            return SUPERVISOR_VERSION + "\n"
        if flag in ("-c", "--configuration"):
            opts.configfile = value
            continue
        if flag == "--profile_options":
            continue  # accepted for compatibility; profiling is done with external tools here
        name, convert = _OVERRIDES[flag]
        if name in opts.overrides:
            raise UsageError(f"conflicting command line option {flag!r}")
        try:
            opts.overrides[name] = True if convert is None else convert(value)
        except ValueError as exc:
            raise UsageError(f"invalid value for {flag} {value!r}: {exc}") from None
    return opts


def load_config(opts: Options, fleet_file: str | None = None) -> Config:
    """The node's config with the fleet's applied revision (or `fleet_file`) included."""
    path = opts.configfile or find_config_file()
    config = load(path)
    fleet_file = fleet_file or RevisionStore(state_dir_of(config)).fleet_file()
    if fleet_file:
        config = load(path, extra_files=[fleet_file])
    if opts.overrides:
        config = dataclasses.replace(
            config, supervisord=dataclasses.replace(config.supervisord, **opts.overrides))
    return config


def make_log(config: Config) -> MainLog:
    sd = config.supervisord
    return MainLog(sd.logfile, maxbytes=sd.logfile_maxbytes, backups=sd.logfile_backups,
                   level=level_from_name(sd.loglevel), echo_stdout=sd.nodaemon and not sd.silent)


async def serve(core: Supervisor) -> SupervisorState:
    """Run the core on this loop until it shuts down or restarts."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2):
        loop.add_signal_handler(sig, core.handle_signal, sig)
    try:
        return await core.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2):
            loop.remove_signal_handler(sig)


def run(opts: Options) -> int:
    first = True
    config = load_config(opts)
    kept = _Kept()
    while True:
        sd = config.supervisord
        boot = BootLog()
        for message in config.warnings:
            boot.warn(message)
        for path in config.included_files:
            boot.info(f'Included extra file "{path}" during parsing')
        drop_privileges(sd.user, boot)
        if first:
            raise_rlimits(sd.minfds, sd.minprocs, boot)
        log = make_log(config)
        log.replay(boot.records)
        if not sd.nocleanup:
            clear_auto_logs(sd.childlogdir, sd.identifier, log)
        # Bound before the fork: "port in use" must reach the terminal, and the loop that
        # serves them does not exist yet.
        listeners = open_listeners(config, log)
        try:
            if first and not sd.nodaemon:
                daemonize(sd.directory, sd.umask, log)
            wrote_pid = write_pidfile(sd.pidfile, log)
            reloader = _Reloader(opts)
            mood = asyncio.run(_serve_config(config, log, reloader, listeners, kept))
        finally:
            close_listeners(listeners)
        if wrote_pid:
            remove_quietly(sd.pidfile)
        log.close()
        if mood != SupervisorState.RESTARTING:
            return 0
        config = reloader.config or config
        first = False


class _Reloader:
    """Parses the config again for a SIGHUP restart; a bad file keeps the running state."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.config: Config | None = None

    def __call__(self) -> Config:
        self.config = load_config(self.opts)
        return self.config

    def with_fleet_file(self, fleet_file: str) -> Config:
        """A candidate revision checked together with the node's file; not kept for restarts."""
        return load_config(self.opts, fleet_file)


@dataclass
class _Kept:
    """What a SIGHUP restart carries over: the TLS set, kept if the files went bad."""

    tls: TlsMaterial | None = None


async def _serve_config(config: Config, log: MainLog, reloader: _Reloader,
                        listeners: list[Listener], kept: _Kept) -> SupervisorState:
    core = Supervisor(config, log, reloader=reloader)
    ledger = None
    if config.fleetvisor is not None:  # fleet nodes only: standalone, behave exactly as supervisord
        await stop_survivors(config, state_dir_of(config), log)
        ledger = Ledger(state_dir_of(config), core)
    http = HttpFace(core, listeners)
    await http.start()
    grpc_face = None
    heartbeat = None
    try:
        fv = config.fleetvisor
        if fv is not None and fv.grpc_listen is not None:
            from .grpcapi.server import GrpcFace  # grpc costs ~20 MB of RSS: only when served
            fleet = FleetConfig(core, RevisionStore(state_dir_of(config)), reloader.with_fleet_file)
            grpc_face = GrpcFace(core, fleet, fv, log)
            await grpc_face.start(kept.tls)
            kept.tls = grpc_face.tls
            if fv.controllers:  # the parser refuses controllers without grpc_listen
                from .heartbeat import Heartbeat, agent_describer
                heartbeat = Heartbeat(fv, agent_describer(fv, grpc_face), log, tls=grpc_face.tls,
                                      keeper=grpc_face.keeper)
                grpc_face.servicer.on_applied.append(heartbeat.poke)
                heartbeat.start()
        return await serve(core)
    finally:
        if heartbeat is not None:
            await heartbeat.stop()
        if grpc_face is not None:
            await grpc_face.close()
        await http.close()
        if ledger is not None:
            ledger.close()


def usage(argv0: str) -> str:
    """The -h text for the program started as `argv0`."""
    program = _progname(argv0)
    title = TITLES.get(os.path.basename(program), TITLES[None])
    return USAGE.format(title=title, program=program)


def _progname(argv0: str) -> str:
    """The program as it was typed (supervisord shows argv[0] unchanged); `python -m` gives
    the module's file, which is no command a user could type again."""
    name = os.path.basename(argv0 or "")
    return "fleetvisor-agent" if name in ("", "__main__.py", "-c") else argv0


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(args)
        if isinstance(opts, str):
            sys.stdout.write(opts)
            return 0
        return run(opts)
    except (UsageError, ConfigError, StartupError) as exc:
        sys.stderr.write(f"Error: {exc}\nFor help, use {_progname(sys.argv[0])} -h\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
