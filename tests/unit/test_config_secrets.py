"""Environment values never show in a config error or warning; the variable is named instead.
With defer_env (the controller) the process environment is not read at all."""

from __future__ import annotations

import textwrap

import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import Value, _Loader, _Redactor, load

SECRET = "s3cret-Value-42"


def write(tmp_path, text: str) -> str:
    path = tmp_path / "supervisord.conf"
    path.write_text("[supervisord]\n" + textwrap.dedent(text).lstrip("\n"))
    return str(path)


def fail(tmp_path, text: str, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, text), environ={"SECRET": SECRET, **env}, host_node_name="n")
    assert SECRET not in str(info.value)
    assert SECRET.casefold() not in str(info.value).casefold()
    return info.value


@pytest.mark.parametrize("option", ["numprocs", "priority", "startsecs", "autostart", "umask",
                                    "stopsignal", "exitcodes", "stdout_logfile_maxbytes"])
def test_a_converter_error_names_the_variable(tmp_path, option):
    err = fail(tmp_path, f"[program:x]\ncommand=y\n{option}=%(ENV_SECRET)s\n")
    assert "%(ENV_SECRET)s" in str(err)
    assert (err.section, err.option) == ("program:x", option)


def test_a_value_partly_from_the_environment(tmp_path):
    err = fail(tmp_path, "[program:x]\ncommand=y\nnumprocs=1%(ENV_SECRET)s\n")
    assert "'1%(ENV_SECRET)s'" in err.message


def test_a_value_passed_on_by_a_program_environment(tmp_path):
    err = fail(tmp_path, "[program:x]\ncommand=y\nenvironment=K=\"%(ENV_SECRET)s\"\n"
                         "stdout_logfile_maxbytes=%(ENV_K)sMB\n")
    assert "%(ENV_SECRET)s" in str(err)


def test_an_escaped_value(tmp_path):
    secret = "it's\tSECRET\\x"
    err = fail(tmp_path, "[program:x]\ncommand=y\nnumprocs=%(ENV_SECRET)s\n", SECRET=secret)
    assert repr(secret)[1:-1] not in str(err) and "%(ENV_SECRET)s" in str(err)


def test_a_value_in_another_letter_case_gets_the_generic_message():
    loader = _Loader({})
    loader.defaults["x"] = Value("%(ENV_S)s", "f.conf", 1)
    text = _Redactor({"ENV_S": "MixedCase"}, loader).text("bad: mixedcase")
    assert text == "a value expanded from ENV_S is not valid here (the value is not shown)"


def test_a_second_expansion_does_not_echo_the_first(tmp_path):
    err = fail(tmp_path, "[program:x]\ncommand=y\nstdout_logfile=%(ENV_SECRET)s\n",
               SECRET=SECRET + "%(nope)s")
    assert "nope" in str(err) and "%(ENV_SECRET)s" in str(err)


def test_a_checked_value_after_conversion(tmp_path):
    err = fail(tmp_path, "[fcgi-program:x]\ncommand=y\nsocket=tcp://localhost:1\n"
                         "socket_backlog=%(ENV_SECRET)s\n", SECRET="98765")
    assert "98765" not in str(err) and "%(ENV_SECRET)s" in str(err)


def test_an_include_pattern_warning(tmp_path):
    (tmp_path / SECRET).mkdir()
    path = write(tmp_path, "[include]\nfiles=%(ENV_DIR)s/*.conf\n")
    config = load(path, environ={"DIR": str(tmp_path / SECRET)}, host_node_name="n")
    assert config.warnings and not any(SECRET in w for w in config.warnings)
    assert any("%(ENV_DIR)s" in w for w in config.warnings)


def test_a_message_without_expansion_is_unchanged(tmp_path):
    err = fail(tmp_path, "[program:x]\ncommand=y\nnumprocs=abc\n", X="abc")
    assert err.message == "not a valid integer: 'abc'"


def test_deferred_names_never_read_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET", SECRET)
    path = write(tmp_path, "[program:x]\ncommand=y %(ENV_SECRET)s\nnumprocs=%(ENV_N)s\n"
                           "user=%(ENV_U)s\n")
    config = load(path, host_node_name="n", defer_env=True)
    (proc,) = config.groups[0].processes
    assert SECRET not in proc.command
    assert proc.user is None  # left to the agent, like numprocs


def test_deferred_errors_name_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET", SECRET)
    path = write(tmp_path, "[program:x]\ncommand=y\nstdout_logfile=%(ENV_SECRET)s/%(nope)s\n")
    with pytest.raises(ConfigError) as info:
        load(path, host_node_name="n", defer_env=True)
    assert "\0" not in str(info.value) and SECRET not in str(info.value)


def test_deferred_still_checks_the_rest(tmp_path):
    path = write(tmp_path, "[program:x]\ncommand=y\nnumprocs=%(ENV_N)s\nautostart=maybe\n")
    with pytest.raises(ConfigError, match="not a valid boolean value: 'maybe'"):
        load(path, host_node_name="n", defer_env=True)
