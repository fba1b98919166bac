"""Every check supervisord makes is made, and each error says where: file, section, option,
line."""

from __future__ import annotations

import os
import textwrap

import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import load


def fail(tmp_path, text: str) -> ConfigError:
    path = tmp_path / "supervisord.conf"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(ConfigError) as info:
        load(str(path), environ={}, host_node_name="n")
    err = info.value
    assert err.file == str(path)
    assert str(path) in str(err)
    return err


def where(err: ConfigError) -> tuple:
    return err.section, err.option, err.line


# (config, message fragment, section, option, line)
CASES = [
    ("[program:x]\ncommand=y\n", "no [supervisord] section", None, None, None),
    ("[supervisord]\n[program:x]\nautostart=true\n",
     "does not specify a command", "program:x", "command", 2),
    ("[supervisord]\n[program:x]\ncommand=y\nnumprocs=2\n",
     "%(process_num) must be present", "program:x", "process_name", 2),
    ("[supervisord]\n[program:x]\ncommand=y\nnumprocs=2\nprocess_name=x_%%(process_num)s\n",
     "duplicate process name", "program:x", None, 2),
    ("[supervisord]\n[program:x]\ncommand=y\nstopasgroup=true\nkillasgroup=false\n",
     "stopasgroup=true and killasgroup=false", "program:x", "killasgroup", 5),
    ("[supervisord]\n[program:a:b]\ncommand=y\n", "invalid name", "program:a:b", None, 2),
    ("[supervisord]\n[program:a b]\ncommand=y\n", "invalid name", "program:a b", None, 2),
    ("[supervisord]\n[group:g/h]\nprograms=\n", "invalid name", "group:g/h", None, 2),
    ("[supervisord]\n[program:x]\ncommand=y\nprocess_name=a:%(process_num)s\n",
     "invalid name", "program:x", "process_name", 4),
    ("[supervisord]\n[program:]\ncommand=y\n", "empty name", "program:", None, 2),
    ("[supervisord]\n[program:a\x00b]\ncommand=y\n", "contains a NUL character", None, None, 2),
    ("[supervisord]\n[program:x]\ncommand=y\nstdout_logfile=/tmp/a\x00b\n", "contains a NUL character", None, None, 4),
    ("[supervisord]\n[program:a\x1bb]\ncommand=y\n", "control character (U+001B)", "program:a\x1bb", None, 2),
    ("[supervisord]\n[program:x]\ncommand=y\nprocess_name=x\x07\n", "control character (U+0007)", "program:x",
     "process_name", 4),
    ("[supervisord]\n[eventlistener:l]\ncommand=y\nevents=TICK_5\nredirect_stderr=true\n",
     "redirect_stderr=true", "eventlistener:l", "redirect_stderr", 5),
    ("[supervisord]\n[eventlistener:l]\ncommand=y\nevents=TICK_5,BOGUS\n",
     "unknown event type BOGUS", "eventlistener:l", "events", 4),
    ("[supervisord]\n[eventlistener:l]\ncommand=y\n",
     'requires an "events" line', "eventlistener:l", "events", 2),
    ("[supervisord]\n[eventlistener:l]\ncommand=y\nevents=TICK_5\nbuffer_size=0\n",
     "invalid buffer_size", "eventlistener:l", "buffer_size", 5),
    ("[supervisord]\n[eventlistener:l]\ncommand=y\nevents=TICK_5\nresult_handler=a b\n",
     "package.module:callable", "eventlistener:l", "result_handler", 5),
    ("[supervisord]\n[group:g]\nprograms=a,nope\n[program:a]\ncommand=y\n",
     "unknown program or fcgi-program 'nope'", "group:g", "programs", 3),
    ("[supervisord]\n[group:g]\nprograms=a\n[program:a]\ncommand=y\n"
     "[fcgi-program:a]\ncommand=y\nsocket=tcp://h:1\n", "ambiguous", "group:g", "programs", 3),
    ("[supervisord]\n[group:g]\nprograms=a,a\n[program:a]\ncommand=y\n",
     "duplicate process name 'a'", "group:g", None, 2),
    ("[supervisord]\n[group:g]\nprograms=a,b\n[program:a]\ncommand=y\n"
     "[program:b]\ncommand=y\nprocess_name=a\n", "duplicate process name", "group:g", None, 2),
    ("[supervisord]\n[program:a]\ncommand=y\n[group:a]\nprograms=\n",
     "group name 'a' is already used", "program:a", None, 2),
    ("[supervisord]\n[program:x]\ncommand=y\nuser=no-such-user-xyz\n",
     "Invalid user name", "program:x", "user", 4),
    ("[supervisord]\nuser=no-such-user-xyz\n", "Invalid user name", "supervisord", "user", 2),
    ("[supervisord]\n[program:x]\ncommand=y\nautostart=maybe\n",
     "not a valid boolean", "program:x", "autostart", 4),
    ("[supervisord]\n[program:x]\ncommand=y\nautorestart=maybe\n",
     "autorestart", "program:x", "autorestart", 4),
    ("[supervisord]\n[program:x]\ncommand=y\nstopsignal=FOO\n",
     "not a valid signal name", "program:x", "stopsignal", 4),
    ("[supervisord]\n[program:x]\ncommand=y\nexitcodes=0,300\n",
     "exit codes", "program:x", "exitcodes", 4),
    ("[supervisord]\n[program:x]\ncommand=y\numask=9\n", "octal", "program:x", "umask", 4),
    ("[supervisord]\n[program:x]\ncommand=y\nnumprocs=two\n",
     "not a valid integer", "program:x", "numprocs", 4),
    ("[supervisord]\n[program:x]\ncommand=y\nstdout_logfile_maxbytes=1TB\n",
     "byte size", "program:x", "stdout_logfile_maxbytes", 4),
    ("[supervisord]\n[program:x]\ncommand=y\nstdout_logfile=/no/such/dir/x.log\n",
     "does not exist", "program:x", "stdout_logfile", 4),
    ("[supervisord]\n[program:x]\ncommand=y\nenvironment=A=1 B=2\n",
     "key/value pairs", "program:x", "environment", 4),
    ("[supervisord]\n[program:x]\ncommand=%(nope)s\n",
     "cannot be expanded", "program:x", "command", 3),
    ("[supervisord]\n[program:x]\ncommand=50%\n", "badly formatted", "program:x", "command", 3),
    ("[supervisord]\nloglevel=loud\n", "bad logging level", "supervisord", "loglevel", 2),
    ("[supervisord]\nlogfile=/no/such/dir/sd.log\n",
     "does not exist", "supervisord", "logfile", 2),
    ("[supervisord]\npidfile=/no/such/dir/sd.pid\n",
     "does not exist", "supervisord", "pidfile", 2),
    ("[supervisord]\nchildlogdir=/no/such/dir\n",
     "not an existing directory", "supervisord", "childlogdir", 2),
    ("[supervisord]\ndirectory=/no/such/dir\n",
     "not an existing directory", "supervisord", "directory", 2),
    ("[supervisord]\numask=x\n", "octal", "supervisord", "umask", 2),
    ("[supervisord]\nminfds=lots\n", "integer", "supervisord", "minfds", 2),
    ("[supervisord]\nenvironment=A\n", "key/value", "supervisord", "environment", 2),
    ("[supervisord]\n[inet_http_server]\nfile=x\n",
     "has no port value", "inet_http_server", "port", 2),
    ("[supervisord]\n[inet_http_server]\nport=127.0.0.1:99999\n",
     "port", "inet_http_server", "port", 3),
    ("[supervisord]\n[inet_http_server]\nport=9001\nusername=u\n",
     "incomplete authentication", "inet_http_server", "password", 2),
    ("[supervisord]\n[unix_http_server]\nchmod=0700\n",
     "has no file value", "unix_http_server", "file", 2),
    ("[supervisord]\n[unix_http_server]\nfile=/tmp/s.sock\nchmod=999\n",
     "octal", "unix_http_server", "chmod", 4),
    ("[supervisord]\n[unix_http_server]\nfile=/tmp/s.sock\nchown=no-such-user-xyz\n",
     "user:group", "unix_http_server", "chown", 4),
    ("[supervisord]\n[unix_http_server]\nfile=/tmp/s.sock\npassword=p\n",
     "incomplete authentication", "unix_http_server", "username", 2),
    ("[supervisord]\n[rpcinterface:x]\nfoo=bar\n",
     "does not specify a supervisor.rpcinterface_factory", "rpcinterface:x", None, 2),
    ("[supervisord]\n[fcgi-program:f]\ncommand=y\n",
     'requires a "socket" line', "fcgi-program:f", "socket", 2),
    ("[supervisord]\n[fcgi-program:f]\ncommand=y\nsocket=unix://rel.sock\n",
     "not an absolute path", "fcgi-program:f", "socket", 4),
    ("[supervisord]\n[fcgi-program:f]\ncommand=y\nsocket=tcp://h:1\nsocket_mode=0600\n",
     "only be used with a unix", "fcgi-program:f", "socket_mode", 5),
    ("[supervisord]\n[fcgi-program:f]\ncommand=y\nsocket=tcp://h:1\nsocket_backlog=0\n",
     "socket_backlog", "fcgi-program:f", "socket_backlog", 5),
    ("[supervisord]\n[include]\nfile=x\n", "no files option", "include", None, 2),
    ("[supervisord]\nk=v\nthis line is garbage\n", "cannot parse line", "supervisord", None, 3),
    ("stray=1\n[supervisord]\n", "before the first [section]", None, None, 1),
]


@pytest.mark.parametrize("text, message, section, option, line", CASES,
                         ids=[c[1][:40] for c in CASES])
def test_error(tmp_path, text, message, section, option, line):
    err = fail(tmp_path, text)
    assert message in err.message
    assert where(err) == (section, option, line)
    rendered = str(err)
    if section:
        assert f"section {section!r}" in rendered
    if option:
        assert f"option {option!r}" in rendered
    if line:
        assert f"line: {line}" in rendered


def test_error_in_included_file_names_that_file(tmp_path):
    (tmp_path / "conf.d").mkdir()
    bad = tmp_path / "conf.d" / "bad.conf"
    bad.write_text("[program:x]\ncommand=y\n\nstartsecs=soon\n")
    main = tmp_path / "supervisord.conf"
    main.write_text("[supervisord]\n[include]\nfiles=conf.d/*.conf\n")
    with pytest.raises(ConfigError) as info:
        load(str(main), environ={})
    assert (info.value.file, info.value.line, info.value.option) == (str(bad), 4, "startsecs")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="could not find config file"):
        load(str(tmp_path / "nope.conf"))


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load(str(tmp_path))


def test_binary_file(tmp_path):
    path = tmp_path / "bin.conf"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(str(path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_main_file(tmp_path):
    path = tmp_path / "s.conf"
    path.write_text("[supervisord]\n")
    path.chmod(0)
    with pytest.raises(ConfigError, match="could not read"):
        load(str(path))


def test_error_in_default_section_value_points_at_default(tmp_path):
    path = tmp_path / "s.conf"
    path.write_text("[DEFAULT]\nstartsecs=x\n[supervisord]\n[program:p]\ncommand=y\n")
    with pytest.raises(ConfigError) as info:
        load(str(path), environ={})
    assert where(info.value) == ("program:p", "startsecs", 2)
