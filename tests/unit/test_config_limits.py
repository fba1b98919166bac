"""Limits on what one config may ask for, checked before any process is built (issue 15)."""

from __future__ import annotations

import textwrap

import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.model import HttpLimits
from fleetvisor.agent.config.parser import DEFAULT_LIMITS, Limits, load


def write(tmp_path, text: str, name: str = "supervisord.conf"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def program(name: str = "x", numprocs: int = 1) -> str:
    return (f"[program:{name}]\ncommand=/bin/true\n"
            f"process_name=%(program_name)s_%(process_num)s\nnumprocs={numprocs}\n")


def test_defaults_are_documented_values():
    assert DEFAULT_LIMITS == Limits(max_numprocs=1000, max_processes=10000,
                                    max_config_bytes=4 * 1024 * 1024)


def test_huge_numprocs_is_refused_naming_option_section_and_limit(tmp_path):
    path = write(tmp_path, "[supervisord]\n" + program(numprocs=100_000_000))
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert (err.section, err.option, err.line) == ("program:x", "numprocs", 5)
    assert "max_numprocs=1000" in str(err) and "[fleetvisor]" in str(err)


def test_numprocs_at_the_limit_is_accepted(tmp_path):
    config = load(write(tmp_path, "[supervisord]\n" + program(numprocs=1000)))
    assert len(config.groups[0].processes) == 1000


def test_fleetvisor_section_raises_and_lowers_limits(tmp_path):
    body = "[supervisord]\n[fleetvisor]\nnode=n\nmax_numprocs=3\n" + program(numprocs=4)
    with pytest.raises(ConfigError, match="max_numprocs=3"):
        load(write(tmp_path, body))
    body = "[supervisord]\n[fleetvisor]\nnode=n\nmax_numprocs=2000\n" + program(numprocs=1500)
    assert len(load(write(tmp_path, body)).groups[0].processes) == 1500


def test_processes_are_counted_over_all_programs(tmp_path):
    body = ("[supervisord]\n[fleetvisor]\nnode=n\nmax_processes=10\n"
            + program("a", 6) + program("b", 5))
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, body))
    assert "max_processes=10" in str(info.value) and info.value.option == "numprocs"


def test_program_sections_are_counted_before_any_is_built(tmp_path):
    body = "[supervisord]\n[fleetvisor]\nnode=n\nmax_processes=2\n" + "".join(
        f"[program:p{i}]\ncommand=/bin/true\n" for i in range(3))
    with pytest.raises(ConfigError, match="3 program sections.*max_processes=2"):
        load(write(tmp_path, body))


def test_included_and_pushed_files_share_the_limits(tmp_path):
    main = write(tmp_path, "[supervisord]\n[fleetvisor]\nnode=n\nmax_processes=5\n" + program("a", 3))
    extra = write(tmp_path, program("b", 3), "fleet.conf")
    with pytest.raises(ConfigError) as info:
        load(main, extra_files=[extra])
    assert info.value.file == extra and "max_processes=5" in str(info.value)


def test_config_size_is_bounded_without_reading_it_all(tmp_path):
    main = write(tmp_path, "[supervisord]\n[fleetvisor]\nnode=n\nmax_config_bytes=2000\n"
                 "[include]\nfiles=big.conf\n")
    write(tmp_path, "; padding\n" * 300, "big.conf")
    with pytest.raises(ConfigError) as info:
        load(main)
    assert info.value.file.endswith("big.conf") and "max_config_bytes=2000" in str(info.value)


def test_main_file_over_the_default_size_is_refused(tmp_path):
    path = write(tmp_path, "[supervisord]\n" + ";" * (4 * 1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="max_config_bytes=4194304"):
        load(path)


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_a_bad_limit_is_an_error(tmp_path, value):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, f"[supervisord]\n[fleetvisor]\nnode=n\nmax_numprocs={value}\n"))
    assert (info.value.section, info.value.option) == ("fleetvisor", "max_numprocs")


def test_limits_passed_in_apply_without_a_fleetvisor_section(tmp_path):
    path = write(tmp_path, "[supervisord]\n" + program(numprocs=5))
    with pytest.raises(ConfigError, match="max_numprocs=4"):
        load(path, limits=Limits(max_numprocs=4))


# -- the HTTP face's bounds ([fleetvisor] http_*) -------------------------------------------------

def test_http_limits_default_without_a_fleetvisor_section(tmp_path):
    assert load(write(tmp_path, "[supervisord]\n")).http_limits == HttpLimits()
    assert HttpLimits() == HttpLimits(10.0, 60.0, 75.0, 32, 8 * 1024 * 1024)  # README's table


def test_http_limits_are_fleetvisor_options(tmp_path):
    config = load(write(tmp_path, "[supervisord]\n[fleetvisor]\nhttp_header_timeout=2.5\nhttp_body_timeout=5\n"
                                  "http_idle_timeout=1\nhttp_max_connections_per_client=4\nhttp_max_body=1MB\n"))
    assert config.http_limits == HttpLimits(2.5, 5.0, 1.0, 4, 1024 * 1024)


@pytest.mark.parametrize("option, value, message", [
    ("http_idle_timeout", "0", "not a positive number of seconds: '0'"),
    ("http_header_timeout", "soon", "not a positive number of seconds: 'soon'"),
    ("http_body_timeout", "inf", "not a positive number of seconds: 'inf'"),
    ("http_max_connections_per_client", "0", "not a positive integer: '0'"),
    ("http_max_body", "lots", "not a valid byte size: 'lots'"),
])
def test_a_bad_http_limit_is_an_error_naming_it(tmp_path, option, value, message):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, f"[supervisord]\n[fleetvisor]\n{option}={value}\n"))
    assert (info.value.section, info.value.option) == ("fleetvisor", option)
    assert message in str(info.value)
