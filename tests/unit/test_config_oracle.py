"""Differential tests: stock supervisor 4.3's own parser is the oracle.

Each sample is parsed by `supervisor.options.ServerOptions` and by ours with the same
environment; the values that decide how processes run must agree, and a file one refuses
the other must refuse too.
"""

from __future__ import annotations

import textwrap

import pytest

pytest.importorskip("supervisor.options")

from supervisor import datatypes as sdt  # noqa: E402

from fleetvisor.agent.config import datatypes as dt  # noqa: E402
from fleetvisor.agent.config.errors import ConfigError  # noqa: E402
from fleetvisor.agent.config.parser import load  # noqa: E402
from tests.config_oracle import (  # noqa: E402
    ENV,
    NODE,
    RANDOM_BAD,
    RANDOM_GOOD,
    compare_with_stock,
    our_view,
    stock_options,
    stock_view,
)

SAMPLES = {
    "minimal": "[supervisord]\n",
    "typical": """
        [unix_http_server]
        file=%(here)s/supervisor.sock   ; the path to the socket file
        chmod=0700                 ; socket file mode (default 0700)

        [inet_http_server]
        port=127.0.0.1:9001
        username=user
        password=123

        [supervisord]
        logfile=%(here)s/supervisord.log ; main log file; default $CWD/supervisord.log
        logfile_maxbytes=50MB        ; max main logfile bytes b4 rotation; default 50MB
        logfile_backups=10           ; # of main logfile backups; 0 means none, default 10
        loglevel=info                ; log level; default info; others: debug,warn,trace
        pidfile=%(here)s/supervisord.pid
        nodaemon=false               ; start in foreground if true; default false
        silent=false
        minfds=1024
        minprocs=200
        umask=022
        identifier=sup-%(ENV_APP)s
        childlogdir=%(here)s
        environment=APP_ENV="prod",HOME="%(ENV_HOME)s"

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [supervisorctl]
        serverurl=unix://%(here)s/supervisor.sock

        [program:web]
        command=/usr/bin/%(ENV_APP)s --port=%(ENV_PORT)s ; the program
        process_name=%(program_name)s_%(process_num)02d
        numprocs=3
        numprocs_start=1
        directory=/srv/%(ENV_APP)s
        umask=002
        priority=10
        autostart=true
        startsecs=5
        startretries=2
        autorestart=unexpected
        exitcodes=0,2
        stopsignal=QUIT
        stopwaitsecs=20
        stopasgroup=true
        user=root
        redirect_stderr=true
        stdout_logfile=%(here)s/%(program_name)s-%(process_num)s.log
        stdout_logfile_maxbytes=1MB
        stdout_logfile_backups=3
        stdout_capture_maxbytes=1MB
        stdout_events_enabled=true
        environment=A="1",WORKER="%(process_num)s",PCT="%(ENV_PCT)s"
        serverurl=AUTO

        [program:worker]
        command=/bin/worker %(ENV_WORKER)s %(host_node_name)s
        environment=WORKER="w"
        stderr_logfile=NONE
        stdout_logfile=%(here)s/%(ENV_WORKER)s.log
        autorestart=true
        stopsignal=9

        [eventlistener:crashmail]
        command=/usr/bin/crashmail -a
        events=PROCESS_STATE_EXITED,PROCESS_STATE_FATAL
        buffer_size=20

        [group:batch]
        programs=b1,b2
        priority=200

        [program:b1]
        command=/bin/b1
        priority=5

        [program:b2]
        command=/bin/b2
        priority=1
        stderr_syslog=true
        stdout_logfile=syslog
    """,
    "fcgi": """
        [supervisord]
        [fcgi-program:php]
        command=/usr/bin/php-cgi
        socket=unix:///tmp/%(program_name)s.sock
        socket_owner=root
        socket_mode=0660
        process_name=%(program_name)s_%(process_num)s
        numprocs=2
        [fcgi-program:tcp]
        command=/bin/x
        socket=tcp://LOCALHOST:9000
    """,
    "comments": """
        [supervisord]
        identifier=a;b ; real comment
        [program:p]
        command=/bin/sh -c "echo #1; echo 2" ; comment
        environment=X="a#b",Y=c#d
        directory=/tmp#x
    """,
    "escapes": """
        [supervisord]
        environment=PCT="100%%%%"
        [program:p]
        command=printf %%s 100%%
        environment=X="%%d"
        stdout_logfile=%(here)s/p-%%%%.log
    """,
    "defaults-section": """
        [DEFAULT]
        autorestart=false
        startsecs=0
        [supervisord]
        [program:a]
        command=a
        [program:b]
        command=b
        startsecs=3
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
    """,
    "multiline": """
        [supervisord]
        [program:m]
        command=/bin/run
          --one

          --two
        environment=
            A="1",
            ; a comment line inside the value

            B="2"
        priority=3

          ; comments and blank lines do not end a value
    """,
    "priorities": """
        [supervisord]
        [program:z]
        command=z
        priority=-5
        [program:y]
        command=y
        [group:g]
        programs=x
        priority=999
        [program:x]
        command=x
        [eventlistener:e]
        command=e
        events=TICK_60
        priority=2000
        [program:n]
        command=n
        numprocs=12
        process_name=n%(process_num)d
    """,
    "own-env": """
        [supervisord]
        environment=SUFFIX="global",KEEP="k"
        [program:q]
        command=q %(ENV_SUFFIX)s %(ENV_KEEP)s
        environment=SUFFIX="blue"
        process_name=q-%(ENV_SUFFIX)s
        directory=/srv/%(ENV_SUFFIX)s
    """,
    "fcgi-in-group": """
        [supervisord]
        [fcgi-program:f]
        command=/bin/f
        socket=tcp://h:1
        [group:g]
        programs=f
    """,
    # %(host_node_name)s is known in program sections and, in [supervisord], to environment='s second expansion
    "host-node-name": """
        [supervisord]
        environment=NODE="%%(host_node_name)s"
        [program:p]
        command=run %(host_node_name)s
        [eventlistener:l]
        command=listen %(host_node_name)s
        events=TICK_60
    """,
    "servers": """
        [supervisord]
        [inet_http_server]
        port=*:9001
        [inet_http_server:two]
        port=9002
        username=%(ENV_APP)s
        password={SHA}82ab876d1387bfafe46cc1c8a2ef074eae50cb1d
        [unix_http_server]
        file=/tmp/fv-test.sock
        chown=root:root
    """,
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_same_result_as_stock(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "supervisord.conf"
    path.write_text(textwrap.dedent(SAMPLES[name]))
    expected = stock_view(stock_options(str(path)))
    assert our_view(str(path)) == expected


def test_include_same_result_as_stock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text(
        "[program:b]\ncommand=b %(here)s\n[program:a]\nautostart=false\n")
    (tmp_path / "conf.d" / "a.conf").write_text("[program:a]\ncommand=a %(here)s\n")
    (tmp_path / "conf.d" / "c.ini").write_text("[program:c]\ncommand=c\n")
    path = tmp_path / "supervisord.conf"
    path.write_text("[supervisord]\nidentifier=%(here)s\n"
                    "[include]\nfiles = conf.d/*.conf %(here)s/conf.d/*.ini\n")
    assert our_view(str(path)) == stock_view(stock_options(str(path)))


# Files both must refuse.
BAD = [
    "[program:x]\ncommand=y\n",
    "[supervisord]\n[program:x]\nautostart=1\n",
    "[supervisord]\n[program:x]\ncommand=y\nnumprocs=2\n",
    "[supervisord]\n[program:x]\ncommand=y\nstopasgroup=true\nkillasgroup=false\n",
    "[supervisord]\n[program:a:b]\ncommand=y\n",
    "[supervisord]\n[program:x]\ncommand=y\nprocess_name=a/%(process_num)s\nnumprocs=2\n",
    "[supervisord]\n[eventlistener:l]\ncommand=y\nevents=TICK_5\nredirect_stderr=true\n",
    "[supervisord]\n[eventlistener:l]\ncommand=y\nevents=TICK_5,NOPE\n",
    "[supervisord]\n[eventlistener:l]\ncommand=y\n",
    "[supervisord]\n[eventlistener:l]\ncommand=y\nevents=TICK_5\nbuffer_size=0\n",
    "[supervisord]\n[group:g]\nprograms=a,nope\n[program:a]\ncommand=y\n",
    "[supervisord]\n[group:g]\nprograms=a,\n[program:a]\ncommand=y\n",
    "[supervisord]\n[program:x]\ncommand=y\nuser=no-such-user-xyz\n",
    "[supervisord]\n[program:x]\ncommand=y\nstopsignal=40\n",
    "[supervisord]\n[program:x]\ncommand=y\nexitcodes=256\n",
    "[supervisord]\n[program:x]\ncommand=y\numask=8\n",
    "[supervisord]\n[program:x]\ncommand=y\nenvironment=A=1 B=2\n",
    "[supervisord]\n[program:x]\ncommand=%(nope)s\n",
    "[supervisord]\n[program:x]\ncommand=y\nenvironment=A=x\nuser=%(ENV_A)s\n",
    "[supervisord]\n[program:x]\ncommand=y\nstdout_logfile=/tmp/a%%d.log\n",
    "[supervisord]\nenvironment=A=\"50%%\"\n",
    "[supervisord]\nloglevel=warning\n",
    "[supervisord]\nlogfile=/no/such/dir/x.log\n",
    "[supervisord]\nchildlogdir=/no/such/dir\n",
    "[supervisord]\n[inet_http_server]\nport=9001\nusername=u\n",
    "[supervisord]\n[inet_http_server]\nport=0\n",
    "[supervisord]\n[unix_http_server]\nchmod=0700\n",
    "[supervisord]\n[rpcinterface:x]\nk=v\n",
    "[supervisord]\n[fcgi-program:f]\ncommand=y\n",
    "[supervisord]\n[fcgi-program:f]\ncommand=y\nsocket=tcp://h:1\nsocket_mode=0600\n",
    "[supervisord]\n[fcgi-program:f]\ncommand=y\nsocket=unix://rel.sock\n",
    "[supervisord]\n[include]\nfile=x\n",
    "[supervisord]\ngarbage line\n",
    # %(host_node_name)s where supervisord does not know it (the fuzzing oracle found ours accepting these)
    "[supervisord]\nidentifier=%(host_node_name)s\n",
    "[supervisord]\nenvironment=NODE=%(host_node_name)s\n",
    "[supervisord]\n[inet_http_server]\nport=%(host_node_name)s:9001\n",
    "[supervisord]\n[rpcinterface:x]\nsupervisor.rpcinterface_factory=a:b\nk=%(host_node_name)s\n",

    "k=v\n[supervisord]\n",
]


@pytest.mark.parametrize("text", BAD)
def test_both_refuse(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "supervisord.conf"
    path.write_text(text)
    with pytest.raises(ValueError):
        stock_options(str(path))
    with pytest.raises(ConfigError):
        load(str(path), environ=ENV, host_node_name=NODE)


def test_stock_sample_config_is_accepted(tmp_path, monkeypatch):
    """The file `echo_supervisord_conf` prints parses the same way."""
    from supervisor.confecho import main as confecho
    import io

    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    confecho(out=out)
    path = tmp_path / "supervisord.conf"
    path.write_text(out.getvalue().replace("/tmp/", f"{tmp_path}/"))
    assert our_view(str(path)) == stock_view(stock_options(str(path)))


def test_signal_numbers_match_stock():
    for number in range(-2, 70):
        try:
            expected = sdt.signal_number(str(number))
        except ValueError:
            expected = None
        try:
            got = dt.signal_number(str(number))
        except ValueError:
            got = None
        assert got == expected, number


def test_key_value_pairs_match_stock():
    import random

    rng = random.Random(7)
    alphabet = ['A', 'b', '=', ',', '"', "'", ' ', '#', ':', '/', '%', '@', '\n', ';']
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        try:
            expected = tuple(sdt.dict_of_key_value_pairs(text).items())
        except ValueError:
            expected = None
        try:
            got = dt.key_value_pairs(text)
        except ValueError:
            got = None
        assert got == expected, repr(text)


def test_byte_sizes_match_stock():
    for text in ["0", "1", "10kb", "10KB", "5 MB", "1gb", "-3", "MB", "1.5MB", "x", "10b"]:
        try:
            expected = sdt.byte_size(text)
        except ValueError:
            expected = None
        try:
            got = dt.byte_size(text)
        except ValueError:
            got = None
        assert got == expected, text


def test_random_programs_same_result_as_stock(tmp_path, monkeypatch):
    import random

    monkeypatch.chdir(tmp_path)
    rng = random.Random(2024)
    path = tmp_path / "supervisord.conf"
    agreed_errors = 0
    for _ in range(400):
        lines = ["[supervisord]"]
        for index in range(rng.randint(1, 3)):
            lines.append(f"[program:p{index}]")
            options = rng.sample(sorted(RANDOM_GOOD), rng.randint(1, 8))
            options += [o for o in ("command", "process_name", "environment")
                        if o not in options]
            for option in options:
                pool = RANDOM_BAD if option in RANDOM_BAD and rng.random() < 0.04 else RANDOM_GOOD
                lines.append(f"{option}={rng.choice(pool[option])}")
        if rng.random() < 0.3:
            lines += ["[group:g]", "programs=p0"]
        text = "\n".join(lines) + "\n"
        path.write_text(text)
        agreed_errors += compare_with_stock(str(path)) == "refused"
    assert 40 < agreed_errors < 360, agreed_errors  # both outcomes were exercised
