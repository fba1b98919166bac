"""[include]: globs relative to the including file, sorted, nested; and extra (pushed) files."""

from __future__ import annotations

import os

import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import load


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def prog(name: str, extra: str = "") -> str:
    return f"[program:{name}]\ncommand=/bin/{name}\n{extra}"


def test_globs_sorted_and_relative_to_including_file(tmp_path):
    write(tmp_path / "etc/conf.d/b.conf", prog("b"))
    write(tmp_path / "etc/conf.d/a.conf", prog("a"))
    write(tmp_path / "etc/conf.d/skip.ini", prog("skip"))
    write(tmp_path / "etc/other/c.conf", prog("c"))
    main = write(tmp_path / "etc/supervisord.conf",
                 "[supervisord]\n[include]\nfiles = conf.d/*.conf other/c.conf\n")
    c = load(str(main), environ={})
    assert sorted(g.name for g in c.groups) == ["a", "b", "c"]
    assert c.included_files == (str(tmp_path / "etc/conf.d/a.conf"),
                                str(tmp_path / "etc/conf.d/b.conf"),
                                str(tmp_path / "etc/other/c.conf"))


def test_absolute_and_expanded_patterns(tmp_path):
    write(tmp_path / "inc/x.conf", prog("x"))
    main = write(tmp_path / "s.conf", "[supervisord]\n[include]\n"
                                      "files = %(here)s/inc/*.conf %(ENV_EXTRA)s/*.conf\n")
    write(tmp_path / "more/y.conf", prog("y"))
    c = load(str(main), environ={"EXTRA": str(tmp_path / "more")})
    assert sorted(g.name for g in c.groups) == ["x", "y"]


def test_here_is_the_directory_of_the_file_holding_the_value(tmp_path):
    write(tmp_path / "sub/p.conf", prog("p", "directory=%(here)s\n"))
    main = write(tmp_path / "s.conf", "[supervisord]\nchildlogdir=%(here)s\n"
                                      "[include]\nfiles=sub/p.conf\n")
    c = load(str(main), environ={})
    assert c.supervisord.childlogdir == str(tmp_path)
    assert c.groups[0].processes[0].directory == str(tmp_path / "sub")


def test_nested_includes_and_cycles(tmp_path):
    write(tmp_path / "a/one.conf", prog("one") + "[include]\nfiles=../b/*.conf\n")
    write(tmp_path / "b/two.conf", prog("two") + "[include]\nfiles=../a/one.conf ../s.conf\n")
    main = write(tmp_path / "s.conf", "[supervisord]\n[include]\nfiles=a/*.conf\n")
    c = load(str(main), environ={})
    assert sorted(g.name for g in c.groups) == ["one", "two"]
    # paths as the glob found them, as supervisord logs them
    assert c.included_files == (str(tmp_path / "a/one.conf"), str(tmp_path / "a/../b/two.conf"))


def test_later_file_overrides_options_of_same_section(tmp_path):
    write(tmp_path / "d/over.conf", "[program:p]\nautostart=false\n")
    main = write(tmp_path / "s.conf",
                 "[supervisord]\n" + prog("p") + "[include]\nfiles=d/*.conf\n")
    (proc,) = load(str(main), environ={}).groups[0].processes
    assert (proc.command, proc.autostart) == ("/bin/p", False)


def test_supervisord_section_may_come_from_an_include(tmp_path):
    write(tmp_path / "d/sd.conf", "[supervisord]\nidentifier=inc\n")
    main = write(tmp_path / "s.conf", "[include]\nfiles=d/sd.conf\n")
    assert load(str(main), environ={}).supervisord.identifier == "inc"


def test_no_match_is_a_warning(tmp_path):
    main = write(tmp_path / "s.conf", "[supervisord]\n[include]\nfiles=none/*.conf\n")
    c = load(str(main), environ={})
    assert c.warnings == (f'No file matches via include "{tmp_path}/none/*.conf"',)


def test_directories_matched_by_a_glob_are_skipped(tmp_path):
    (tmp_path / "d/sub.conf").mkdir(parents=True)
    write(tmp_path / "d/p.conf", prog("p"))
    main = write(tmp_path / "s.conf", "[supervisord]\n[include]\nfiles=d/*\n")
    assert [g.name for g in load(str(main), environ={}).groups] == ["p"]


def test_dangling_symlink_include_is_an_error(tmp_path):
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "gone.conf", tmp_path / "d/x.conf")
    main = write(tmp_path / "s.conf", "[supervisord]\n[include]\nfiles=d/*.conf\n")
    with pytest.raises(ConfigError, match="could not find") as info:
        load(str(main), environ={})
    assert info.value.file == str(tmp_path / "d/x.conf")


def test_bad_include_expansion(tmp_path):
    main = write(tmp_path / "s.conf", "[supervisord]\n[include]\nfiles=%(ENV_NOPE)s\n")
    with pytest.raises(ConfigError) as info:
        load(str(main), environ={})
    assert (info.value.section, info.value.option, info.value.line) == ("include", "files", 3)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_include(tmp_path):
    inc = write(tmp_path / "d/x.conf", prog("x"))
    inc.chmod(0)
    main = write(tmp_path / "s.conf", "[supervisord]\n[include]\nfiles=d/*.conf\n")
    with pytest.raises(ConfigError, match="could not read"):
        load(str(main), environ={})


# -- extra files: program-level sections pushed by the fleet ------------------------------

def test_extra_files_are_read_last(tmp_path):
    main = write(tmp_path / "s.conf", "[supervisord]\nenvironment=G=1\n" + prog("local"))
    extra = write(tmp_path / "state/rev7.conf",
                  prog("pushed", "directory=%(here)s\n") + "[group:grp]\nprograms=pushed\n")
    c = load(str(main), environ={}, extra_files=[str(extra)])
    assert sorted(g.name for g in c.groups) == ["grp", "local"]
    proc = c.group("grp").processes[0]
    assert proc.directory == str(tmp_path / "state") and proc.env == {"G": "1"}
    assert c.included_files[-1] == str(extra)


def test_extra_file_may_not_redefine_a_local_section(tmp_path):
    main = write(tmp_path / "s.conf", "[supervisord]\n" + prog("web"))
    extra = write(tmp_path / "rev.conf", "\n" + prog("web"))
    with pytest.raises(ConfigError, match="already defined") as info:
        load(str(main), environ={}, extra_files=[str(extra)])
    assert (info.value.file, info.value.section, info.value.line) == (str(extra), "program:web", 2)


def test_extra_file_group_clashing_with_local_program(tmp_path):
    main = write(tmp_path / "s.conf", "[supervisord]\n" + prog("web"))
    extra = write(tmp_path / "rev.conf", prog("x") + "[group:web]\nprograms=x\n")
    with pytest.raises(ConfigError, match="group name 'web' is already used"):
        load(str(main), environ={}, extra_files=[str(extra)])


@pytest.mark.parametrize("section", ["supervisord", "include", "fleetvisor",
                                     "inet_http_server", "DEFAULT"])
def test_extra_file_holds_program_sections_only(tmp_path, section):
    main = write(tmp_path / "s.conf", "[supervisord]\n")
    extra = write(tmp_path / "rev.conf", f"[{section}]\nfiles=x\n")
    with pytest.raises(ConfigError, match="may be pushed"):
        load(str(main), environ={}, extra_files=[str(extra)])
