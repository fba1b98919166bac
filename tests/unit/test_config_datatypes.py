"""Value converters: one small test per rule."""

from __future__ import annotations

import os
import signal

import pytest

from fleetvisor.agent.config import datatypes as dt
from fleetvisor.agent.config.model import AUTO, AutoRestart


@pytest.mark.parametrize("text", ["yes", "true", "on", "1", "TRUE", "Yes"])
def test_boolean_true(text):
    assert dt.boolean(text) is True


@pytest.mark.parametrize("text", ["no", "false", "off", "0", "FALSE", "Off"])
def test_boolean_false(text):
    assert dt.boolean(text) is False


@pytest.mark.parametrize("text", ["", "2", "y", "truee", " true"])
def test_boolean_rejects(text):
    with pytest.raises(ValueError, match="not a valid boolean"):
        dt.boolean(text)


@pytest.mark.parametrize("text, expected", [
    ("0", 0), ("1024", 1024), ("10KB", 10240), ("10kb", 10240), ("50MB", 50 * 1024 ** 2),
    ("1GB", 1024 ** 3), ("2gB", 2 * 1024 ** 3), ("5 KB", 5120), ("-1", -1),
])
def test_byte_size(text, expected):
    assert dt.byte_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "1.5MB", "10B", "10 TB", "ten"])
def test_byte_size_rejects(text):
    with pytest.raises(ValueError, match="byte size"):
        dt.byte_size(text)


@pytest.mark.parametrize("text, expected", [("022", 0o22), ("22", 0o22), ("0o77", 0o77),
                                            ("0", 0), ("777", 0o777)])
def test_octal(text, expected):
    assert dt.octal(text) == expected


@pytest.mark.parametrize("text", ["8", "0x1", "", "abc"])
def test_octal_rejects(text):
    with pytest.raises(ValueError, match="octal"):
        dt.octal(text)


@pytest.mark.parametrize("text, expected", [
    ("TERM", signal.SIGTERM), ("SIGTERM", signal.SIGTERM), ("term", signal.SIGTERM),
    ("sigkill", signal.SIGKILL), ("HUP", signal.SIGHUP), ("15", 15), ("9", 9),
    (" int ", signal.SIGINT), ("USR1", signal.SIGUSR1), ("RTMIN", signal.SIGRTMIN),
])
def test_signal_number(text, expected):
    assert dt.signal_number(text) == int(expected)


@pytest.mark.parametrize("text", ["NOPE", "SIGNOPE", "99", "-1", "40", ""])
def test_signal_number_rejects(text):
    with pytest.raises(ValueError, match="signal"):
        dt.signal_number(text)


@pytest.mark.parametrize("text, expected", [
    ("true", AutoRestart.ALWAYS), ("yes", AutoRestart.ALWAYS), ("1", AutoRestart.ALWAYS),
    ("false", AutoRestart.NEVER), ("off", AutoRestart.NEVER),
    ("unexpected", AutoRestart.UNEXPECTED), ("UNEXPECTED", AutoRestart.UNEXPECTED),
])
def test_auto_restart(text, expected):
    assert dt.auto_restart(text) is expected


def test_auto_restart_rejects():
    with pytest.raises(ValueError, match="autorestart"):
        dt.auto_restart("sometimes")


@pytest.mark.parametrize("text", ["critical", "error", "warn", "info", "debug", "trace",
                                  "blather", "INFO"])
def test_logging_level(text):
    assert dt.logging_level(text) == text.lower()


def test_logging_level_rejects_warning():
    # supervisord knows "warn", not "warning"
    with pytest.raises(ValueError, match="bad logging level"):
        dt.logging_level("warning")


@pytest.mark.parametrize("text, expected", [("0", (0,)), ("0,2", (0, 2)), (" 1 , 255", (1, 255)),
                                            ("", ())])
def test_exit_codes(text, expected):
    assert dt.exit_codes(text) == expected


@pytest.mark.parametrize("text", ["256", "-1", "a", "0,,1", "1.5"])
def test_exit_codes_reject(text):
    with pytest.raises(ValueError, match="exit codes"):
        dt.exit_codes(text)


@pytest.mark.parametrize("text, expected", [
    ('A="1",B=2', (("A", "1"), ("B", "2"))),
    ('PATH="/usr/bin:/bin",X=y', (("PATH", "/usr/bin:/bin"), ("X", "y"))),
    ("A='a,b c'", (("A", "a,b c"),)),
    ('A=""', (("A", ""),)),
    ("", ()),
    ("A=1,\n B=2", (("A", "1"), ("B", "2"))),
    ("A=1;B=2", (("A", "1"), ("B", "2"))),  # any single token separates, as in supervisord
    ("A=x#y", (("A", "x"),)),  # non-POSIX shlex: '#' starts a comment
    ("B=2,A=1,B=3", (("B", "3"), ("A", "1"))),
    ("URL=http://h:80/p.x+y-z", (("URL", "http://h:80/p.x+y-z"),)),
])
def test_key_value_pairs(text, expected):
    assert dt.key_value_pairs(text) == expected


@pytest.mark.parametrize("text", ["A", "A=", "A=1 B=2", "A=b=c", 'A="open', "A=a@b"])
def test_key_value_pairs_reject(text):
    with pytest.raises(ValueError, match="key/value"):
        dt.key_value_pairs(text)


@pytest.mark.parametrize("text", ["a", "cat_01", " spaced ", "x-y.z"])
def test_name_ok(text):
    assert dt.name(text) == text.strip()


@pytest.mark.parametrize("text, char", [("a:b", ":"), ("a b", " "), ("a/b", "/")])
def test_name_rejects(text, char):
    with pytest.raises(ValueError, match=f"{char!r}"):
        dt.name(text)


def test_user_id_by_name_and_number():
    assert dt.user_id("root") == 0
    assert dt.user_id("0") == 0
    assert dt.checked_user("nobody") == "nobody"


@pytest.mark.parametrize("text, match", [("no-such-user-xyz", "Invalid user name"),
                                         ("987654", "Invalid user id")])
def test_user_id_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        dt.user_id(text)


def test_user_and_group():
    assert dt.user_and_group("root") == (0, -1)
    assert dt.user_and_group("root:root") == (0, 0)
    assert dt.user_and_group("0:0") == (0, 0)
    for bad in ("root:no-such-group-xyz", "no-such-user-xyz", "root:"):
        with pytest.raises(ValueError, match="user:group"):
            dt.user_and_group(bad)


@pytest.mark.parametrize("text, expected", [
    ("9001", ("", 9001)), ("127.0.0.1:9001", ("127.0.0.1", 9001)), ("*:80", ("", 80)),
    (":80", ("", 80)), ("LocalHost:1", ("localhost", 1)),
])
def test_inet_address(text, expected):
    assert dt.inet_address(text) == expected


@pytest.mark.parametrize("text", ["host:", "0", "70000", "host:x", "x"])
def test_inet_address_rejects(text):
    with pytest.raises(ValueError, match="port"):
        dt.inet_address(text)


@pytest.mark.parametrize("text, expected", [
    ("h:1", ("h", 1)), ("[::1]:50051", ("::1", 50051)), ("0.0.0.0:5", ("0.0.0.0", 5)),
    ("5", ("", 5)),
])
def test_host_port(text, expected):
    assert dt.host_port(text) == expected


def test_host_port_list_needs_hosts():
    assert dt.host_port_list("a:1, b:2") == (("a", 1), ("b", 2))
    assert dt.host_port_list("") == ()
    with pytest.raises(ValueError, match="HOST:PORT"):
        dt.host_port_list("a:1,:2")


@pytest.mark.parametrize("text, expected", [
    ("unix:///tmp/x/../s.sock", "unix:///tmp/s.sock"),
    ("tcp://LocalHost:8000", "tcp://localhost:8000"),
])
def test_fcgi_socket_url(text, expected):
    assert dt.fcgi_socket_url(text) == expected


@pytest.mark.parametrize("text, match", [
    ("unix://rel/s.sock", "not an absolute path"), ("tcp://h:0", "out of range"),
    ("tcp://h", "bad socket format"), ("udp://h:1", "bad socket format"),
])
def test_fcgi_socket_url_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        dt.fcgi_socket_url(text)


def test_event_names_sorted_unique_and_checked():
    assert dt.event_names("tick_60, PROCESS_STATE,TICK_60") == ("PROCESS_STATE", "TICK_60")
    assert dt.event_names("") == ()
    with pytest.raises(ValueError, match="unknown event type NOPE"):
        dt.event_names("TICK_5,NOPE")


def test_labels():
    assert dt.labels("role=web, zone = a,empty=") == (("role", "web"), ("zone", "a"),
                                                     ("empty", ""))
    assert dt.labels("") == ()
    for bad, match in [("novalue", "not a valid label"), ("=x", "not a valid label"),
                       ("a=1,a=2", "twice")]:
        with pytest.raises(ValueError, match=match):
            dt.labels(bad)


def test_is_spec():
    assert dt.is_spec("supervisor.rpcinterface:make_main_rpcinterface")
    assert dt.is_spec("mod") == "mod"
    with pytest.raises(ValueError, match="package.module:callable"):
        dt.is_spec("not a spec")


def test_paths(tmp_path):
    assert dt.existing_directory(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="not an existing directory"):
        dt.existing_directory(str(tmp_path / "nope"))
    assert dt.existing_dirpath("plain.log") == "plain.log"
    assert dt.existing_dirpath(str(tmp_path / "x.log")) == str(tmp_path / "x.log")
    assert dt.existing_dirpath("~/x.log") == os.path.expanduser("~/x.log")
    with pytest.raises(ValueError, match="does not exist"):
        dt.existing_dirpath(str(tmp_path / "nope" / "x.log"))


@pytest.mark.parametrize("text, expected", [("NONE", None), ("off", None), ("auto", AUTO),
                                            ("Syslog", dt.Syslog), ("/tmp/x.log", "/tmp/x.log")])
def test_logfile_name(text, expected):
    assert dt.logfile_name(text) == expected
