"""Whole files to the model: every section and option, defaults, expansions, numprocs."""

from __future__ import annotations

import os
import signal
import tempfile
import textwrap

import pytest

from fleetvisor.agent.config.model import (
    AUTO, AutoRestart, CtlConfig, FcgiSocketConfig, GroupKind, HttpServerConfig, LogConfig,
    ProcessConfig, RpcInterfaceConfig, SupervisordConfig,
)
from fleetvisor.agent.config.parser import load

ENV = {"HOME": "/home/u", "TOKEN": "t0k"}


@pytest.fixture
def conf(tmp_path):
    """Write a config (dedented) into tmp_path and load it with a fixed environment."""
    def make(text: str, name: str = "supervisord.conf", **kw):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        kw.setdefault("environ", ENV)
        kw.setdefault("host_node_name", "node1")
        return load(str(path), **kw)
    return make


def test_minimal_defaults(conf, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = conf("[supervisord]\n")
    assert c.path == str(tmp_path / "supervisord.conf")
    assert c.supervisord == SupervisordConfig(
        logfile=str(tmp_path / "supervisord.log"), pidfile=str(tmp_path / "supervisord.pid"),
        childlogdir=tempfile.gettempdir())
    assert c.groups == () and c.http_servers == () and c.rpcinterfaces == ()
    assert c.ctl == CtlConfig() and c.fleetvisor is None
    assert c.included_files == () and c.warnings == ()


def test_program_defaults(conf):
    c = conf("[supervisord]\n[program:cat]\ncommand=/bin/cat\n")
    (group,) = c.groups
    assert (group.name, group.priority, group.kind) == ("cat", 999, GroupKind.PROGRAM)
    assert group.processes == (ProcessConfig(name="cat", command="/bin/cat", group="cat",
                                             program_name="cat"),)
    proc = group.processes[0]
    assert proc.stdout == LogConfig() and proc.stderr == LogConfig()
    assert proc.serverurl == AUTO and proc.stopsignal == signal.SIGTERM


def test_every_option(conf, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    c = conf(f"""
        [supervisord]
        logfile = %(here)s/logs/main.log
        logfile_maxbytes = 1MB
        logfile_backups = 3
        loglevel = DEBUG
        pidfile = %(here)s/sd.pid
        umask = 027
        nodaemon = true
        silent = yes
        minfds = 2048
        minprocs = 300
        nocleanup = on
        childlogdir = {logs}
        user = nobody
        directory = %(here)s
        strip_ansi = true
        environment = GLOBAL="g",SHARED=sd
        identifier = node-sup

        [unix_http_server]
        file = %(here)s/sv.sock
        chmod = 0770
        chown = nobody:nogroup
        username = u1
        password = {{SHA}}abc

        [inet_http_server]
        port = 127.0.0.1:9001
        username = u2
        password = p2

        [supervisorctl]
        serverurl = unix://%(here)s/sv.sock
        username = cu
        password = cp
        prompt = mysup
        history_file = %(here)s/.hist

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        retries = 2

        [program:web]
        command = /usr/bin/web --port 80%(process_num)02d
        process_name = %(program_name)s_%(process_num)02d
        numprocs = 2
        numprocs_start = 1
        priority = 5
        autostart = false
        autorestart = true
        startsecs = 0
        startretries = 7
        exitcodes = 0,2
        stopsignal = INT
        stopwaitsecs = 30
        stopasgroup = true
        killasgroup = true
        user = root
        directory = /srv/%(program_name)s
        umask = 002
        environment = SHARED="prog",PORT="80%(process_num)02d"
        serverurl = http://127.0.0.1:9001
        redirect_stderr = false
        stdout_logfile = {logs}/%(program_name)s-%(process_num)d.out
        stdout_logfile_maxbytes = 10KB
        stdout_logfile_backups = 2
        stdout_capture_maxbytes = 1KB
        stdout_events_enabled = true
        stdout_syslog = true
        stderr_logfile = NONE
        stderr_logfile_maxbytes = 0
        stderr_logfile_backups = 0
        stderr_capture_maxbytes = 2KB
        stderr_events_enabled = 1
        stderr_syslog = false
    """)
    here = str(tmp_path)
    assert c.supervisord == SupervisordConfig(
        logfile=f"{here}/logs/main.log", logfile_maxbytes=1024 ** 2, logfile_backups=3,
        loglevel="debug", pidfile=f"{here}/sd.pid", umask=0o27, nodaemon=True, silent=True,
        minfds=2048, minprocs=300, nocleanup=True, childlogdir=str(logs), user="nobody",
        directory=here, strip_ansi=True, environment=(("GLOBAL", "g"), ("SHARED", "sd")),
        identifier="node-sup")
    assert c.http_servers == (
        HttpServerConfig(kind="inet", host="127.0.0.1", port=9001, username="u2",
                         password="p2"),
        HttpServerConfig(kind="unix", file=f"{here}/sv.sock", chmod=0o770,
                         chown=(65534, 65534), username="u1", password="{SHA}abc"),
    )
    assert c.ctl == CtlConfig(serverurl=f"unix://{here}/sv.sock", username="cu",
                              password="cp", prompt="mysup", history_file=f"{here}/.hist")
    assert c.rpcinterfaces == (RpcInterfaceConfig(
        name="supervisor", factory="supervisor.rpcinterface:make_main_rpcinterface",
        options=(("retries", "2"),)),)
    (web,) = c.groups
    assert (web.name, web.priority) == ("web", 5)
    assert [p.name for p in web.processes] == ["web_01", "web_02"]
    first = web.processes[0]
    assert first == ProcessConfig(
        name="web_01", command="/usr/bin/web --port 8001", group="web", program_name="web",
        process_num=1, priority=5, autostart=False, autorestart=AutoRestart.ALWAYS,
        startsecs=0, startretries=7, exitcodes=(0, 2), stopsignal=int(signal.SIGINT),
        stopwaitsecs=30, stopasgroup=True, killasgroup=True, user="root",
        directory="/srv/web", umask=0o2,
        environment=(("GLOBAL", "g"), ("SHARED", "prog"), ("PORT", "8001")),
        serverurl="http://127.0.0.1:9001", redirect_stderr=False,
        stdout=LogConfig(logfile=f"{logs}/web-1.out", maxbytes=10240, backups=2,
                         capture_maxbytes=1024, events_enabled=True, syslog=True),
        stderr=LogConfig(logfile=None, maxbytes=0, backups=0, capture_maxbytes=2048,
                         events_enabled=True, syslog=False),
    )
    assert web.processes[1].env["PORT"] == "8002"
    assert web.processes[1].stdout.logfile == f"{logs}/web-2.out"


def test_eventlistener_and_fcgi(conf):
    c = conf("""
        [supervisord]
        [eventlistener:mon]
        command = /bin/listener
        events = PROCESS_STATE, tick_60
        buffer_size = 50
        result_handler = mypkg.handlers:handle
        stdout_capture_maxbytes = 1MB
        [fcgi-program:php]
        command = /usr/bin/php-cgi
        socket = unix:///tmp/%(program_name)s.sock
        socket_backlog = 128
        socket_mode = 0660
        socket_owner = root:root
        numprocs = 2
        process_name = %(program_name)s-%(process_num)s
        [fcgi-program:tcp]
        command = /bin/x
        socket = tcp://LocalHost:9000
    """)
    mon, php, tcp = c.groups  # listeners' default priority is -1, so it comes first
    assert (mon.name, mon.priority, mon.kind) == ("mon", -1, GroupKind.EVENTLISTENER)
    assert mon.events == ("PROCESS_STATE", "TICK_60")
    assert mon.buffer_size == 50 and mon.result_handler == "mypkg.handlers:handle"
    assert mon.processes[0].kind is GroupKind.EVENTLISTENER
    assert mon.processes[0].stdout.capture_maxbytes == 1024 ** 2  # accepted, as 4.3 does
    assert php.kind is GroupKind.FCGI and [p.name for p in php.processes] == ["php-0", "php-1"]
    assert php.socket == FcgiSocketConfig(url="unix:///tmp/php.sock", backlog=128,
                                          owner=(0, 0), mode=0o660)
    assert all(p.kind is GroupKind.FCGI for p in php.processes)
    assert tcp.socket == FcgiSocketConfig(url="tcp://localhost:9000")


def test_fcgi_socket_owner_defaults_to_program_user(conf):
    c = conf("""
        [supervisord]
        [fcgi-program:f]
        command = /bin/x
        user = nobody
        socket = unix:///tmp/f.sock
    """)
    expected_owner = None if os.getuid() == 65534 else (65534, 65534)
    assert c.groups[0].socket == FcgiSocketConfig(url="unix:///tmp/f.sock", mode=0o700,
                                                  owner=expected_owner)


def test_heterogeneous_group(conf):
    c = conf("""
        [supervisord]
        [group:g]
        programs = b, a
        priority = 10
        [program:a]
        command = /bin/a
        priority = 2
        [program:b]
        command = /bin/b
        process_name = b%(process_num)d
        numprocs = 2
        priority = 1
        [program:solo]
        command = /bin/solo
        [fcgi-program:f]
        command = /bin/f
        socket = tcp://h:1
        [group:h]
        programs = f
    """)
    assert [g.name for g in c.groups] == ["g", "h", "solo"]
    g = c.group("g")
    assert g.priority == 10 and g.kind is GroupKind.PROGRAM
    # listed order of programs, each program's processes sorted by priority then name
    assert [(p.name, p.group, p.program_name) for p in g.processes] == [
        ("b0", "g", "b"), ("b1", "g", "b"), ("a", "g", "a")]
    assert c.group("a") is None and c.group("b") is None
    # an fcgi-program listed in a group runs as a plain program (no socket), as in 4.3
    h = c.group("h")
    assert h.socket is None and h.processes[0].kind is GroupKind.PROGRAM
    assert c.group("f") is None


def test_group_ordering_by_priority_then_name(conf):
    c = conf("""
        [supervisord]
        [program:zeta]
        command = z
        priority = 1
        [program:beta]
        command = b
        [program:alpha]
        command = a
        [group:mid]
        programs = gamma
        priority = 500
        [program:gamma]
        command = g
        [eventlistener:ev]
        command = e
        events = TICK_5
    """)
    assert [(g.name, g.priority) for g in c.groups] == [
        ("ev", -1), ("zeta", 1), ("mid", 500), ("alpha", 999), ("beta", 999)]


def test_processes_sorted_like_supervisord(conf):
    c = conf("""
        [supervisord]
        [program:p]
        command = x
        numprocs = 11
        process_name = p_%(process_num)d
    """)
    # by name as text, so p_10 sorts before p_2
    assert [p.name for p in c.groups[0].processes][:4] == ["p_0", "p_1", "p_10", "p_2"]
    assert [p.process_num for p in c.groups[0].processes][:4] == [0, 1, 10, 2]


def test_numprocs_zero_and_start(conf):
    c = conf("""
        [supervisord]
        [program:none]
        command = x
        numprocs = 0
        [program:s]
        command = x %(process_num)s/%(numprocs)s
        numprocs = 2
        numprocs_start = 100
        process_name = s%(process_num)03d
    """)
    assert c.group("none").processes == ()
    assert [(p.name, p.command) for p in c.group("s").processes] == [
        ("s100", "x 100/2"), ("s101", "x 101/2")]


def test_expansions(conf, tmp_path):
    c = conf("""
        [supervisord]
        environment = SDVAR="from-sd"
        [program:p]
        command = run %(ENV_HOME)s %(here)s %(program_name)s %(group_name)s %(host_node_name)s %(ENV_SDVAR)s 100%%
        directory = /d/%(ENV_LOCAL)s
        environment = LOCAL="own",TOKEN="%(ENV_TOKEN)s-x"
        stdout_logfile = %(here)s/%(ENV_LOCAL)s.log
    """)
    p = c.groups[0].processes[0]
    assert p.command == f"run /home/u {tmp_path} p p node1 from-sd 100%"
    # a program's own environment= keys are ENV_ names in its per-process options
    assert p.directory == "/d/own"
    assert p.stdout.logfile == f"{tmp_path}/own.log"
    assert p.env == {"SDVAR": "from-sd", "LOCAL": "own", "TOKEN": "t0k-x"}


def test_own_environment_is_not_visible_to_options_read_once(conf):
    # as in 4.3: user, priority etc. are read before environment= is expanded
    from fleetvisor.agent.config.errors import ConfigError
    with pytest.raises(ConfigError, match="cannot be expanded") as info:
        conf("""
            [supervisord]
            [program:p]
            command = x
            environment = WHO="root"
            user = %(ENV_WHO)s
        """)
    assert info.value.option == "user"


def test_process_num_not_available_in_options_read_once(conf):
    from fleetvisor.agent.config.errors import ConfigError
    with pytest.raises(ConfigError, match="process_num") as info:
        conf("[supervisord]\n[program:p]\ncommand=x\npriority=%(process_num)d\n")
    assert (info.value.option, info.value.line) == ("priority", 4)


def test_group_name_expansion_inside_group(conf):
    c = conf("""
        [supervisord]
        [group:grp]
        programs = p
        [program:p]
        command = echo %(group_name)s %(program_name)s
    """)
    assert c.group("grp").processes[0].command == "echo grp p"


def test_redirect_stderr_drops_stderr_logfile_with_warning(conf, tmp_path):
    c = conf(f"""
        [supervisord]
        [program:p]
        command = x
        redirect_stderr = true
        stderr_logfile = {tmp_path}/err.log
    """)
    p = c.groups[0].processes[0]
    assert p.redirect_stderr and p.stderr.logfile is None
    assert any("redirect_stderr" in w for w in c.warnings)


def test_syslog_logfile_is_rewritten(conf):
    c = conf("[supervisord]\n[program:p]\ncommand=x\nstdout_logfile=syslog\n")
    assert c.groups[0].processes[0].stdout == LogConfig(logfile=None, syslog=True)
    assert any("deprecated" in w for w in c.warnings)


def test_auto_log_without_rollover_warns(conf):
    c = conf("[supervisord]\n[program:p]\ncommand=x\nstdout_logfile_maxbytes=0\n")
    assert any("AUTO" in w for w in c.warnings)


def test_serverurl_auto_variants(conf):
    c = conf("""
        [supervisord]
        [program:a]
        command = x
        serverurl = auto
        [program:b]
        command = x
        serverurl =
    """)
    assert [g.processes[0].serverurl for g in c.groups] == [AUTO, AUTO]


def test_syslog_main_logfile_is_not_made_absolute(conf):
    assert conf("[supervisord]\nlogfile=syslog\n").supervisord.logfile == "syslog"


def test_killasgroup_defaults_to_stopasgroup(conf):
    p = conf("[supervisord]\n[program:p]\ncommand=x\nstopasgroup=true\n").groups[0].processes[0]
    assert p.stopasgroup and p.killasgroup


def test_default_section_applies_to_all(conf):
    c = conf("""
        [DEFAULT]
        autostart = false
        [supervisord]
        [program:a]
        command = x
        [program:b]
        command = y
        autostart = true
    """)
    assert [g.processes[0].autostart for g in c.groups] == [False, True]


def test_case_of_option_names_is_ignored(conf):
    p = conf("[supervisord]\n[program:p]\nCOMMAND=x\nAutoStart=false\n").groups[0].processes[0]
    assert (p.command, p.autostart) == ("x", False)


def test_unknown_sections_and_options_are_ignored(conf):
    c = conf("""
        [supervisord]
        bogus = 1
        [ctlplugin:x]
        supervisor.ctl_factory = a.b:c
        [somethingelse]
        k = v
        [program:p]
        command = x
        nonsense = 1
    """)
    assert [g.name for g in c.groups] == ["p"]


def test_multiline_command_and_environment(conf):
    p = conf("""
        [supervisord]
        [program:p]
        command = /bin/run
            --flag
        environment =
            A="1",
            B="2"
    """).groups[0].processes[0]
    assert p.command == "/bin/run\n--flag"
    assert p.env == {"A": "1", "B": "2"}


def test_unix_http_server_defaults_and_multiple_inet(conf, tmp_path):
    c = conf("""
        [supervisord]
        [unix_http_server]
        file = sock
        [inet_http_server]
        port = 9001
        [inet_http_server:second]
        port = *:9002
    """)
    assert c.http_servers == (
        HttpServerConfig(kind="inet", host="", port=9001),
        HttpServerConfig(kind="inet", host="", port=9002),
        HttpServerConfig(kind="unix", file=os.path.abspath("sock")),
    )


def test_supervisorctl_is_lenient(conf):
    # supervisord never reads [supervisorctl]; a bad expansion there must not block it
    c = conf("[supervisord]\n[supervisorctl]\nprompt = %(nope)s\n")
    assert c.ctl.prompt == "%(nope)s"


def test_supervisord_environment_expanded_twice(conf):
    # 4.3 expands [supervisord] environment= twice, so a literal % needs %%%%
    c = conf('[supervisord]\nenvironment = PCT="50%%%%"\n')
    assert c.supervisord.environment == (("PCT", "50%"),)
