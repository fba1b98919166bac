"""The config oracle: stock supervisor 4.3's own parser (`supervisor.options.ServerOptions`) and ours read the
same file, and `stock_view`/`our_view` reduce each result to the values that decide how processes run, so two
parses can be compared with `==`. Shared by the hand-picked cases (tests/unit/test_config_oracle.py) and the
generated ones (tests/fuzz/test_fuzz_config.py).
"""

from __future__ import annotations

import platform
import warnings

from supervisor import datatypes as sdt
from supervisor.events import getEventNameByType
from supervisor.options import ServerOptions

from fleetvisor.agent.config import datatypes as dt
from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.model import AUTO, AutoRestart
from fleetvisor.agent.config.parser import load

ENV = {"HOME": "/home/u", "APP": "shop", "PORT": "8080", "PCT": "50%"}
NODE = platform.node()  # stock supervisord always uses this

_RESTART = {False: AutoRestart.NEVER, sdt.RestartUnconditionally: AutoRestart.ALWAYS,
            sdt.RestartWhenExitUnexpected: AutoRestart.UNEXPECTED}


def stock_options(path: str) -> ServerOptions:
    opts = ServerOptions()
    opts.environ_expansions = {f"ENV_{k}": v for k, v in ENV.items()}
    opts.configfile = path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opts.process_config(do_usage=False)
    return opts


def stock_logfile(value):
    return AUTO if value is sdt.Automatic else value


def stock_view(opts: ServerOptions) -> dict:
    sd = opts.configroot.supervisord
    groups = []
    for g in opts.process_group_configs:
        group = {"name": g.name, "priority": g.priority, "processes": [
            {"name": p.name, "command": p.command, "priority": p.priority,
             "autostart": p.autostart, "autorestart": _RESTART[p.autorestart],
             "startsecs": p.startsecs, "startretries": p.startretries,
             "exitcodes": tuple(p.exitcodes), "stopsignal": p.stopsignal,
             "stopwaitsecs": p.stopwaitsecs, "stopasgroup": p.stopasgroup,
             "killasgroup": p.killasgroup, "uid": p.uid, "directory": p.directory,
             "umask": p.umask, "environment": dict(p.environment or {}),
             "serverurl": p.serverurl or AUTO, "redirect_stderr": p.redirect_stderr,
             **{f"{ch}_{k}": (stock_logfile(v) if k == "logfile" else v)
                for ch in ("stdout", "stderr")
                for k, v in (("logfile", getattr(p, f"{ch}_logfile")),
                             ("maxbytes", getattr(p, f"{ch}_logfile_maxbytes")),
                             ("backups", getattr(p, f"{ch}_logfile_backups")),
                             ("capture", getattr(p, f"{ch}_capture_maxbytes")),
                             ("events", getattr(p, f"{ch}_events_enabled")),
                             ("syslog", getattr(p, f"{ch}_syslog")))}}
            for p in g.process_configs]}
        if hasattr(g, "pool_events"):
            group["events"] = tuple(sorted(getEventNameByType(e) for e in g.pool_events))
            group["buffer_size"] = g.buffer_size
            handler = g.result_handler
            group["result_handler"] = f"{handler.__module__}:{handler.__name__}"
        if hasattr(g, "socket_config"):
            group["socket"] = g.socket_config.url
        groups.append(group)
    servers = sorted((c["family"].name, c.get("host"), c.get("port"), c.get("file"),
                      c["username"], c["password"]) for c in sd.server_configs)
    return {
        "supervisord": {
            "logfile": sd.logfile if sd.logfile == "syslog" else dt.normalize_path(sd.logfile),
            "pidfile": dt.normalize_path(sd.pidfile),
            "logfile_maxbytes": sd.logfile_maxbytes, "logfile_backups": sd.logfile_backups,
            "umask": sd.umask, "nodaemon": bool(sd.nodaemon), "silent": bool(sd.silent),
            "minfds": sd.minfds, "minprocs": sd.minprocs, "nocleanup": bool(sd.nocleanup),
            "childlogdir": sd.childlogdir, "user": sd.user, "directory": sd.directory,
            "strip_ansi": bool(sd.strip_ansi), "environment": dict(sd.environment),
            "identifier": sd.identifier},
        "groups": groups,
        "servers": servers,
        "rpc": [(name, {k: v for k, v in extras.items()})
                for name, _factory, extras in sd.rpcinterface_factories],
    }


def our_view(path: str) -> dict:
    c = load(path, environ=ENV, host_node_name=NODE)
    sd = c.supervisord
    groups = []
    for g in c.groups:
        group = {"name": g.name, "priority": g.priority, "processes": [
            {"name": p.name, "command": p.command, "priority": p.priority,
             "autostart": p.autostart, "autorestart": p.autorestart,
             "startsecs": p.startsecs, "startretries": p.startretries,
             "exitcodes": p.exitcodes, "stopsignal": p.stopsignal,
             "stopwaitsecs": p.stopwaitsecs, "stopasgroup": p.stopasgroup,
             "killasgroup": p.killasgroup,
             "uid": None if p.user is None else dt.user_id(p.user),
             "directory": p.directory, "umask": p.umask, "environment": p.env,
             "serverurl": p.serverurl, "redirect_stderr": p.redirect_stderr,
             **{f"{ch}_{k}": v for ch in ("stdout", "stderr")
                for k, v in (("logfile", getattr(p, ch).logfile),
                             ("maxbytes", getattr(p, ch).maxbytes),
                             ("backups", getattr(p, ch).backups),
                             ("capture", getattr(p, ch).capture_maxbytes),
                             ("events", getattr(p, ch).events_enabled),
                             ("syslog", getattr(p, ch).syslog))}}
            for p in g.processes]}
        if g.kind.value == "eventlistener":
            group.update(events=g.events, buffer_size=g.buffer_size,
                         result_handler=g.result_handler)
        if g.socket is not None:
            group["socket"] = g.socket.url
        groups.append(group)
    servers = sorted(("AF_INET" if s.kind == "inet" else "AF_UNIX", s.host, s.port, s.file,
                      s.username, s.password) for s in c.http_servers)
    return {
        "supervisord": {
            "logfile": sd.logfile, "pidfile": sd.pidfile,
            "logfile_maxbytes": sd.logfile_maxbytes, "logfile_backups": sd.logfile_backups,
            "umask": sd.umask, "nodaemon": sd.nodaemon, "silent": sd.silent,
            "minfds": sd.minfds, "minprocs": sd.minprocs, "nocleanup": sd.nocleanup,
            "childlogdir": sd.childlogdir, "user": sd.user, "directory": sd.directory,
            "strip_ansi": sd.strip_ansi, "environment": dict(sd.environment),
            "identifier": sd.identifier},
        "groups": groups,
        "servers": servers,
        "rpc": [(r.name, dict(r.options)) for r in c.rpcinterfaces],
    }



# What ours refuses on purpose in files stock accepts, each documented in README: files stock half ignores (two
# processes or groups of one name, an empty section name: "Using the agent") and the config limits ("Config
# limits": numprocs=100000000 would make stock build a hundred million processes).
STRICTER = ("duplicate process name", "has an empty name", "is already used by", "(limit max_")


def compare_with_stock(path: str) -> str:
    """Parse `path` with both and fail unless they agree; says how: 'accepted' (same values), 'refused' (both
    refuse) or 'stricter' (a file stock accepts that ours refuses on purpose)."""
    text = open(path, errors="replace").read()
    try:
        got, refusal = our_view(path), None
    except ConfigError as exc:
        got, refusal = None, exc
    if refusal is not None and "(limit max_" in refusal.message:
        return "stricter"  # not asked of stock, which would build every one of the processes
    try:
        expected = stock_view(stock_options(path))
    except ValueError:
        if refusal is not None:
            return "refused"
        raise AssertionError(f"stock refuses a file ours accepts:\n{text}") from None
    if refusal is not None:
        if any(reason in refusal.message for reason in STRICTER):
            return "stricter"
        raise AssertionError(f"ours refuses ({refusal}) a file stock accepts:\n{text}")
    assert got == expected, text
    return "accepted"


# Option values for random programs: mostly good ones, some that one of the checks refuses.
RANDOM_GOOD = {
    "command": ["/bin/x", "x %(process_num)s/%(numprocs)s", "%(ENV_APP)s", "a %% b",
                "%(program_name)s-%(group_name)s", "run %(ENV_LOCAL)s"],
    "numprocs": ["1", "2", "0"],
    "numprocs_start": ["0", "3"],
    "process_name": ["%(program_name)s_%(process_num)s", "%(program_name)s%(process_num)02d",
                     "%(program_name)s_%(ENV_LOCAL)s%(process_num)s"],
    "environment": ['LOCAL="v"', "LOCAL=1,B=2", 'X="%(process_num)s",LOCAL=l',
                    'LOCAL="%(ENV_APP)s"'],
    "autostart": ["true", "no"],
    "autorestart": ["true", "unexpected", "false"],
    "stopsignal": ["TERM", "9", "kill", "0", "SIGRTMIN"],
    "exitcodes": ["0", "1,2", ""],
    "umask": ["022", "0"],
    "stopasgroup": ["true", "false"],
    "killasgroup": ["true", "false"],
    "stdout_logfile": ["NONE", "AUTO", "syslog", "%(here)s/%(program_name)s.log",
                       "%(here)s/x%%%%.log"],
    "stderr_logfile": ["off", "%(here)s/e-%(program_name)s-%(process_num)s.log"],
    "stdout_logfile_maxbytes": ["0", "1KB"],
    "redirect_stderr": ["true", "false"],
    "directory": ["/tmp", "%(process_num)s", "%(ENV_HOME)s"],
    "priority": ["1", "-1", "999"],
    "user": ["root", "nobody"],
    "serverurl": ["AUTO", "http://x"],
    "startsecs": ["0", "10"],
}
RANDOM_BAD = {
    "command": ["%(nope)s", "50%"],
    "numprocs": ["x"],
    "process_name": ["p:1", "%(program_name)s"],
    "environment": ["A", "A=1 B=2", ""],
    "autostart": ["maybe"],
    "autorestart": ["sometimes"],
    "stopsignal": ["40", "x"],
    "exitcodes": ["256"],
    "umask": ["8"],
    "stdout_logfile": ["/no/dir/x.log", "%(here)s/x%%d.log", "%(here)s/%(ENV_LOCAL)s.log"],
    "stdout_logfile_maxbytes": ["x"],
    "directory": ["%(ENV_LOCAL)s"],
    "priority": ["x", "%(process_num)s"],
    "user": ["nouserxyz", "%(ENV_LOCAL)s"],
    "startsecs": ["x"],
}


# A config using every section kind, and fragments that break it, for mutation fuzzing.
BASE = """[supervisord]
logfile=%(here)s/sd.log
[unix_http_server]
file=%(here)s/s.sock
[inet_http_server]
port=127.0.0.1:9001
[supervisorctl]
serverurl=unix://%(here)s/s.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory=supervisor.rpcinterface:make_main_rpcinterface
[fleetvisor]
node=n1
labels=a=b
controllers=c:1
grpc_listen=127.0.0.1:1
[program:p]
command=/bin/p %(process_num)s
process_name=%(program_name)s_%(process_num)s
numprocs=2
environment=A="1",B="%(ENV_HOME)s"
stdout_logfile=%(here)s/p.log
[eventlistener:e]
command=/bin/e
events=TICK_5
[fcgi-program:f]
command=/bin/f
socket=unix:///tmp/f.sock
[group:g]
programs=p
[include]
files=*.inc
"""

JUNK = ["%", "%(", ")s", "=", ":", ";", "#", "[", "]", "\n", " ", "\t", "\x00", "\u2028",
        "~", "/", ",", '"', "'", "99999999999999999999", "-1", "true", "%(process_num)d",
        "%(here)s", "%%", "\\", "\r", "é", "[program:x]", "[group:y]", "command=",
        "numprocs=", "user=", "\x0c"]
