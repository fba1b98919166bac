"""healthcheck= and its options in [program:x] (issue 16): parsed per process, refused with one
error naming the option, and ignored by stock supervisord 4.3 (which loads the same file)."""

from __future__ import annotations

import textwrap

import pytest
from supervisor.options import ServerOptions

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.model import HealthAction, HealthCheck, ProbeKind
from fleetvisor.agent.config.parser import load

HEAD = "[supervisord]\nlogfile=%(here)s/sd.log\npidfile=%(here)s/sd.pid\n"


def write(tmp_path, body: str) -> str:
    path = tmp_path / "supervisord.conf"
    path.write_text(HEAD + textwrap.dedent(body))
    return str(path)


def checks(tmp_path, body: str) -> dict[str, HealthCheck | None]:
    config = load(write(tmp_path, body))
    return {p.name: p.healthcheck for g in config.groups for p in g.processes}


def test_each_probe_kind_and_the_defaults(tmp_path):
    found = checks(tmp_path, """
        [program:web]
        command=/bin/web
        process_name=web-%(process_num)d
        numprocs=2
        healthcheck=http://127.0.0.1:80%(process_num)02d/health
        [program:db]
        command=/bin/db
        healthcheck=tcp:localhost:5432
        healthcheck_interval=2.5
        healthcheck_timeout=1
        healthcheck_retries=5
        healthcheck_start_period=30
        healthcheck_action=restart
        [program:job]
        command=/bin/job
        healthcheck=exec:/usr/bin/check --quick "a b"
        [program:plain]
        command=/bin/plain
        """)
    assert found["web-0"] == HealthCheck(ProbeKind.HTTP, "http://127.0.0.1:8000/health")
    assert found["web-1"].target == "http://127.0.0.1:8001/health"
    assert found["db"] == HealthCheck(ProbeKind.TCP, "localhost:5432", 2.5, 1.0, 5, 30.0, HealthAction.RESTART)
    assert found["job"] == HealthCheck(ProbeKind.EXEC, '/usr/bin/check --quick "a b"')
    assert found["plain"] is None
    assert HealthCheck(ProbeKind.TCP, "x:1") == HealthCheck(ProbeKind.TCP, "x:1", 10.0, 5.0, 3, 0.0,
                                                            HealthAction.NONE)  # README's defaults


@pytest.mark.parametrize("lines, option, words", [
    ("healthcheck=ftp://x:21/", "healthcheck", "is not a health check: use exec:COMMAND"),
    ("healthcheck=http://localhost/health", "healthcheck", "must name a host and a port"),
    ("healthcheck=tcp:5432", "healthcheck", "does not name a host"),
    ("healthcheck=exec:", "healthcheck", "needs a command"),
    ("healthcheck=exec:check 'open", "healthcheck", "does not parse"),
    ("healthcheck=tcp:db:1\nhealthcheck_interval=0", "healthcheck_interval", "not a positive number of seconds"),
    ("healthcheck=tcp:db:1\nhealthcheck_retries=0", "healthcheck_retries", "not a positive integer"),
    ("healthcheck=tcp:db:1\nhealthcheck_start_period=-1", "healthcheck_start_period", "not a number of seconds"),
    ("healthcheck=tcp:db:1\nhealthcheck_action=reboot", "healthcheck_action", "none or restart"),
    ("healthcheck_timeout=3", "healthcheck_timeout", "healthcheck= is not"),
])
def test_bad_health_options_are_refused_naming_the_option(tmp_path, lines, option, words):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, f"[program:x]\ncommand=/bin/x\n{lines}\n"))
    assert (info.value.section, info.value.option) == ("program:x", option)
    assert words in str(info.value)


def test_an_event_listener_has_no_health_check(tmp_path):
    with pytest.raises(ConfigError, match="an event listener cannot have a health check"):
        load(write(tmp_path, "[eventlistener:e]\ncommand=/bin/e\nevents=TICK_5\nhealthcheck=tcp:x:1\n"))


def test_stock_supervisord_loads_the_same_file(tmp_path):
    path = write(tmp_path, """
        [program:db]
        command=/bin/db
        healthcheck=tcp:localhost:5432
        healthcheck_interval=2
        healthcheck_timeout=1
        healthcheck_retries=5
        healthcheck_start_period=30
        healthcheck_action=restart
        """)
    options = ServerOptions()
    options.realize(args=["-c", path])
    assert [g.name for g in options.process_group_configs] == ["db"]
