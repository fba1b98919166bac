"""Where the config file is looked for without -c."""

from __future__ import annotations

import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.search import find_config_file, search_paths


def test_search_paths_hang_off_the_executables_parent_dir():
    assert search_paths("/usr/local/bin/supervisord") == [
        "/usr/local/etc/supervisord.conf",
        "/usr/local/supervisord.conf",
        "supervisord.conf",
        "etc/supervisord.conf",
        "/etc/supervisord.conf",
        "/etc/supervisor/supervisord.conf",
    ]


def test_bare_program_name_searches_relative_paths():
    assert search_paths("fleetvisor-agent")[:2] == ["etc/supervisord.conf", "supervisord.conf"]


def test_same_list_as_stock():
    import sys

    from supervisor.options import Options

    saved = sys.argv[0]
    try:
        sys.argv[0] = "/opt/sv/bin/supervisord"
        assert search_paths("/opt/sv/bin/supervisord") == Options().searchpaths
    finally:
        sys.argv[0] = saved


def test_first_existing_wins():
    present = {"etc/supervisord.conf", "/etc/supervisord.conf"}
    assert find_config_file("/x/bin/agent", exists=present.__contains__) == "etc/supervisord.conf"


def test_cwd_relative_file_found(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "supervisord.conf").write_text("[supervisord]\n")
    assert find_config_file(str(tmp_path / "nowhere/bin/agent")) == "supervisord.conf"


def test_nothing_found_lists_the_paths():
    with pytest.raises(ConfigError, match="-c") as info:
        find_config_file("/x/bin/agent", exists=lambda path: False)
    assert "/x/etc/supervisord.conf" in str(info.value)
    assert "/etc/supervisor/supervisord.conf" in str(info.value)
