"""`fleetvisor-agent`: supervisord's command line, startup sequence and restart loop."""

from __future__ import annotations

import asyncio
import dataclasses
import getopt
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import events
from .config import datatypes
from .config.errors import ConfigError
from .config.model import Config
from .config.parser import load
from .config.search import find_config_file
from .daemon import StartupError, daemonize, drop_privileges, raise_rlimits, remove_quietly, write_pidfile
from .fleetconfig import FleetConfig, RevisionStore, state_dir_of
from .http.listeners import Listener, close_listeners, open_listeners
from .http.server import HttpFace
from .leftovers import Ledger, boot_id, stop_survivors
from .mainlog import BootLog, MainLog, level_from_name
from .operations import AGENT_VERSION, SUPERVISOR_VERSION  # the version clients see
from .reexec import grpcport
from .reexec.children import AdoptError, adopt_children, auto_logs_of, capture_children
from .reexec.grpcport import GRPC
from .reexec.handoff import (
    PROBE_FLAG,
    RESUME_FLAG,
    exec_agent,
    hold_signals,
    keep_private,
    own_command,
    probe_answer,
    release_signals,
    write_state,
)
from .reexec.pools import capture_pools, restore_pools
from .reexec.sockets import adopt_sockets, keep_sockets
from .reexec.state import STATE_VERSION, HandoffState, SocketState, StateError
from .reexec.state import read as read_state
from .reexec.trigger import Plan, Reexec
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
{ours}
"""
# Options of our own, listed only under our own name: as `supervisord` the usage is stock's.
OUR_USAGE = "--reexec-command COMMAND -- what a re-exec (fleetvisor.reexec) runs; default: this agent's own command\n"

SHORT_OPTS = "c:nshvu:m:d:l:y:z:e:j:i:q:ka:t?"
LONG_OPTS = ["configuration=", "nodaemon", "silent", "help", "version", "user=", "umask=",
             "directory=", "logfile=", "logfile_maxbytes=", "logfile_backups=", "loglevel=",
             "pidfile=", "identifier=", "childlogdir=", "nocleanup", "minfds=", "strip_ansi",
             "minprocs=", "profile_options=", "reexec-command=", "resume=", "reexec-probe"]

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
    reexec_command: list[str] | None = None
    resume: str | None = None  # the handoff file of the agent this one replaces (internal)
    probe: bool = False  # the dry run a re-exec makes of the new agent (internal)
    argv: list[str] = field(default_factory=list)  # as given, without the two internal flags


def parse_args(argv: Sequence[str]) -> Options | str:
    """Options, or the text to print and exit 0 with (help, version)."""
    try:
        pairs, args = getopt.gnu_getopt(list(argv), SHORT_OPTS, LONG_OPTS)
    except getopt.GetoptError as exc:
        raise UsageError(str(exc)) from None
    if args:
        raise UsageError(f"positional arguments are not supported: {args}")
    opts = Options(argv=_without_internal(argv))
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
        if flag == "--reexec-command":
            opts.reexec_command = shlex.split(value)
            if not opts.reexec_command:
                raise UsageError("--reexec-command needs a command")
            continue
        if flag == "--resume":
            opts.resume = value
            continue
        if flag == "--reexec-probe":
            opts.probe = True
            continue
        name, convert = _OVERRIDES[flag]
        if name in opts.overrides:
            raise UsageError(f"conflicting command line option {flag!r}")
        try:
            opts.overrides[name] = True if convert is None else convert(value)
        except ValueError as exc:
            raise UsageError(f"invalid value for {flag} {value!r}: {exc}") from None
    return opts


def _without_internal(argv: Sequence[str]) -> list[str]:
    """The arguments a re-exec passes on: all but --resume FILE and --reexec-probe."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == RESUME_FLAG:
            skip = True
        elif not (arg.startswith(RESUME_FLAG + "=") or arg == PROBE_FLAG):
            kept.append(arg)
    return kept


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


async def serve(core: Supervisor, resumed: bool = False) -> SupervisorState:
    """Run the core on this loop until it shuts down or restarts."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2):
        loop.add_signal_handler(sig, core.handle_signal, sig)
    release_signals()  # held across a re-exec (see handoff.HELD_SIGNALS): handled from here on
    for deferred in core.deferred_signals:  # asked of the agent before this one, during the handover
        loop.call_soon(core.handle_signal, deferred)
    core.deferred_signals = []
    try:
        return await core.run(resumed)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2):
            loop.remove_signal_handler(sig)
            if core.handing_over:
                # Until the exec: a default action would kill the agent (and with it the pipes);
                # the next agent acts on what came meanwhile.
                signal.signal(sig, lambda number, _frame: core.handle_signal(number))


def run(opts: Options) -> int:
    first = True
    config = load_config(opts)
    if opts.probe:  # a re-exec's dry run: the config loads and the handoff format is read
        sys.stdout.write(probe_answer(STATE_VERSION, AGENT_VERSION))
        return 0
    resume_state, resume_error = _read_resume(opts.resume)
    kept = _Kept(resume=resume_state)
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
        if resume_error:
            log.critical(resume_error)
            resume_error = ""
        resume, kept.resume = kept.resume, None
        if not sd.nocleanup and resume is None:  # a re-exec'd agent's children still write to theirs
            clear_auto_logs(sd.childlogdir, sd.identifier, log)
        # Bound before the fork: "port in use" must reach the terminal, and the loop that
        # serves them does not exist yet. A re-exec hands them over open.
        listeners = open_listeners(config, log) if resume is None else adopt_sockets(config, resume.sockets, log)
        try:
            if first and not sd.nodaemon and resume is None:
                daemonize(sd.directory, sd.umask, log)
            wrote_pid = write_pidfile(sd.pidfile, log)
            reloader = _Reloader(opts)
            mood = asyncio.run(_serve_config(config, log, reloader, listeners, kept, resume))
        except AdoptError as exc:
            assert resume is not None
            return _go_back(resume, str(exc), log, state_dir_of(config))
        finally:
            if kept.handoff is None:
                close_listeners(listeners)
        if kept.handoff is not None:
            # The pid file and a unix socket's file stay: the same pid goes on serving.
            handoff, kept.handoff = kept.handoff, None
            kept.resume = _exec_next(handoff, opts, config, log)
            log.close()
            first = False
            continue  # the exec failed: this agent takes its own handoff back
        if wrote_pid:
            remove_quietly(sd.pidfile)
        log.close()
        if mood != SupervisorState.RESTARTING:
            return 0
        config = reloader.config or config
        first = False


def _read_resume(path: str | None) -> tuple[HandoffState | None, str]:
    """The handoff of the agent this one re-exec'd from, or the line that says why there is
    none (for the main log). Unreadable, it is an ordinary start: the children are then
    survivors, as after a SIGKILL (see leftovers)."""
    if path is None:
        return None, ""
    try:
        state = read_state(path)
    except StateError as exc:
        return None, f"re-exec failed: cannot resume: {exc}; starting afresh"
    finally:
        remove_quietly(path)
    if state.boot != boot_id():
        return None, f"re-exec failed: the handoff file {path} is from another boot; starting afresh"
    return state, ""


def _exec_next(state: HandoffState, opts: Options, config: Config, log: MainLog) -> HandoffState:
    """Exec the next agent with `state`; returns only if that failed, with the state to resume."""
    command = opts.reexec_command or own_command()
    try:
        path = write_state(state_dir_of(config), state)
    except OSError as exc:
        log.critical(f"re-exec failed: cannot write the handoff file: {exc.strerror}; carrying on")
        return state
    hold_signals()  # the main log needs no flush: it is written unbuffered
    try:
        exec_agent(command, state, path)
    except OSError as exc:
        release_signals()
        remove_quietly(path)
        log.critical(f"re-exec failed: cannot exec {command[0]}: {exc.strerror}; carrying on")
    return state


def _go_back(state: HandoffState, why: str, log: MainLog, state_dir: str) -> int:
    """The new agent cannot take the children over: exec the one that handed them over."""
    if state.fallback:
        log.critical(f"re-exec failed: {why}; the previous agent could not take the processes back "
                     "either: exiting, they keep running (the next start stops them, see leftovers)")
        log.close()
        return 1
    log.critical(f"re-exec failed: {why}; going back to {' '.join(state.previous_command)}")
    back = dataclasses.replace(state, fallback=True)
    try:
        path = write_state(state_dir, back)
        hold_signals()
        exec_agent(back.previous_command, back, path)
    except OSError as exc:
        log.critical(f"re-exec failed: cannot go back either: {exc.strerror}; exiting, the processes keep running")
    log.close()
    return 1


class _Reloader:
    """Parses the config again for a SIGHUP restart; a bad file keeps the running state."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.config: Config | None = None

    def __call__(self) -> Config:
        self.config = load_config(self.opts)
        return self.config

    def fresh(self) -> Config:
        """The config file parsed again, not kept (a re-exec's check)."""
        return load_config(self.opts)

    def with_fleet_file(self, fleet_file: str) -> Config:
        """A candidate revision checked together with the node's file; not kept for restarts."""
        return load_config(self.opts, fleet_file)


@dataclass
class _Kept:
    """What a SIGHUP restart carries over: the TLS set, kept if the files went bad; and
    between a re-exec's two agents, the handoff going out or coming in."""

    tls: TlsMaterial | None = None
    handoff: HandoffState | None = None  # set when this run ends in a re-exec
    resume: HandoffState | None = None  # what the next run takes over


async def _serve_config(config: Config, log: MainLog, reloader: _Reloader, listeners: list[Listener],
                        kept: _Kept, resume: HandoffState | None = None) -> SupervisorState:
    began = time.monotonic()
    core = Supervisor(config, log, reloader=reloader,
                      auto_logs=auto_logs_of(resume.children) if resume is not None else None)
    if resume is not None:
        adopted = adopt_children(core, resume.children)  # AdoptError: run() goes back
        restore_pools(core, resume.pools)
        keep_private(resume.fds())
        events.GLOBAL_SERIAL.value = resume.event_serial
        core.deferred_signals = list(resume.signals)
        core.started_at = resume.started_at
    core.reexec = Reexec(core, Plan(command=reloader.opts.reexec_command or own_command(),
                                    argv=reloader.opts.argv, load_config=reloader.fresh))
    fv = config.fleetvisor
    grpc_face = None
    if fv is not None and fv.grpc_listen is not None:
        from .grpcapi.server import GrpcFace  # grpc costs ~20 MB of RSS: only when served
        fleet = FleetConfig(core, RevisionStore(state_dir_of(config)), reloader.with_fleet_file)
        # Made before the first await: its journal numbers every change from the start,
        # also the exits of children that ended during a re-exec (reported at once).
        grpc_face = GrpcFace(core, fleet, fv, log)
        if resume is not None:
            grpc_face.journal.resume(resume.journal_run_id, resume.journal_sequence)
    ledger = None
    if fv is not None:  # fleet nodes only: standalone, behave exactly as supervisord
        if resume is None:  # after a re-exec the "survivors" are this agent's own children
            await stop_survivors(config, state_dir_of(config), log)
        ledger = Ledger(state_dir_of(config), core)
        ledger.seed(core)
    http = HttpFace(core, listeners)
    await http.start()
    heartbeat = None
    kept_sockets: list[SocketState] = []
    try:
        held = [s for s in resume.sockets if s.kind == GRPC] if resume is not None else []
        if grpc_face is None:
            grpcport.close(held)  # gRPC is no longer configured: what it queued is refused
        if fv is not None and grpc_face is not None:
            await grpc_face.start(kept.tls, held)
            kept.tls = grpc_face.tls
            if fv.controllers:  # the parser refuses controllers without grpc_listen
                from .heartbeat import Heartbeat, agent_describer
                heartbeat = Heartbeat(fv, agent_describer(fv, grpc_face), log, tls=grpc_face.tls,
                                      keeper=grpc_face.keeper)
                grpc_face.servicer.on_applied.append(heartbeat.poke)
                heartbeat.start()
        if resume is not None:
            log.info(f"re-exec: took over {adopted} running processes with their pids, serving again "
                     f"{(time.time() - resume.written_at) * 1000:.0f} ms after the handover "
                     f"(startup {(time.monotonic() - began) * 1000:.0f} ms)")
        mood = await serve(core, resumed=resume is not None)
        if core.handing_over:  # before the servers close theirs: connections queue meanwhile
            kept_sockets = keep_sockets(listeners) + (grpc_face.hold() if grpc_face is not None else [])
            await http.drain()
    finally:
        if heartbeat is not None:
            await heartbeat.stop()
        if grpc_face is not None:
            await grpc_face.close()
        await http.close()  # in-flight requests finish (SHUTDOWN_TIMEOUT)
        if ledger is not None:
            ledger.close()  # its file keeps the children: a SIGKILL during the exec is covered
    if core.handing_over:
        journal = grpc_face.journal if grpc_face is not None else None
        kept.handoff = HandoffState(
            argv=reloader.opts.argv, previous_command=own_command(), boot=boot_id(), written_at=time.time(),
            started_at=core.started_at, event_serial=events.GLOBAL_SERIAL.value,
            journal_run_id=journal.run_id if journal is not None else "",
            journal_sequence=journal.last_sequence if journal is not None else 0,
            sockets=kept_sockets, pools=capture_pools(core), children=capture_children(core),
            signals=core.deferred_signals)
    return mood


def usage(argv0: str) -> str:
    """The -h text for the program started as `argv0`."""
    program = _progname(argv0)
    stock = os.path.basename(program) in TITLES
    return USAGE.format(title=TITLES[os.path.basename(program) if stock else None], program=program,
                        ours="" if stock else OUR_USAGE)


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
