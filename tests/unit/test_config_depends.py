"""depends_on in [program:x] (issue 16): names that exist, no cycles, refused at load naming
what is wrong; stock supervisord 4.3 starts the same file (it ignores the option)."""

from __future__ import annotations

import textwrap

import pytest
from supervisor.options import ServerOptions

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import load

HEAD = "[supervisord]\nlogfile=%(here)s/sd.log\npidfile=%(here)s/sd.pid\n"


def write(tmp_path, body: str) -> str:
    path = tmp_path / "supervisord.conf"
    path.write_text(HEAD + textwrap.dedent(body))
    return str(path)


def depends(tmp_path, body: str, **kwargs) -> dict[str, tuple[str, ...]]:
    config = load(write(tmp_path, body), **kwargs)
    return {p.name: p.depends_on for g in config.groups for p in g.processes}


def test_programs_and_whole_groups_as_dependencies(tmp_path):
    found = depends(tmp_path, """
        [program:db]
        command=/bin/db
        [program:cache]
        command=/bin/cache
        [group:backends]
        programs=db,cache
        [program:api]
        command=/bin/api
        depends_on = db , backends:*, db
        [program:web]
        command=/bin/web
        process_name=web-%(process_num)d
        numprocs=2
        depends_on=api
        """)
    assert found["api"] == ("db", "backends:*")
    assert found["web-0"] == found["web-1"] == ("api",)
    assert found["db"] == ()


@pytest.mark.parametrize("body, message", [
    ("[program:a]\ncommand=/bin/a\ndepends_on=nosuch\n", "depends on nosuch, but no program named nosuch is defined"),
    ("[program:a]\ncommand=/bin/a\ndepends_on=nosuch:*\n", "depends on nosuch:*, but no group named nosuch is defined"),
    ("[program:a]\ncommand=/bin/a\ndepends_on=a\n", "depends_on makes a cycle: a -> a"),
    ("[program:a]\ncommand=/bin/a\ndepends_on=b\n[program:b]\ncommand=/bin/b\ndepends_on=c\n"
     "[program:c]\ncommand=/bin/c\ndepends_on=a\n", "depends_on makes a cycle: a -> b -> c -> a"),
    ("[program:a]\ncommand=/bin/a\ndepends_on=g:*\n[program:b]\ncommand=/bin/b\ndepends_on=a\n"
     "[group:g]\nprograms=b\n", "depends_on makes a cycle: a -> b -> a"),
    ("[program:a]\ncommand=/bin/a\ndepends_on=b:c\n", "'b:c' is neither a program name nor GROUP:*"),
])
def test_missing_names_and_cycles_are_refused(tmp_path, body, message):
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, body))
    assert info.value.option == "depends_on" and info.value.section.startswith("program:")
    assert message in str(info.value)


def test_names_known_elsewhere_are_accepted(tmp_path):
    """A controller checks a fleet config whose programs depend on a node's own programs."""
    assert depends(tmp_path, "[program:a]\ncommand=/bin/a\ndepends_on=db,local:*\n",
                   known_elsewhere={"db", "local"})["a"] == ("db", "local:*")


def test_stock_supervisord_loads_the_same_file_even_with_a_cycle(tmp_path):
    path = write(tmp_path, """
        [program:db]
        command=/bin/db
        depends_on=api
        [program:api]
        command=/bin/api
        depends_on=db
        """)
    with pytest.raises(ConfigError, match="depends_on makes a cycle: api -> db -> api"):
        load(path)
    options = ServerOptions()
    options.realize(args=["-c", path])
    assert sorted(g.name for g in options.process_group_configs) == ["api", "db"]
