"""Per-program options and daemon flags that change how children run, checked on real processes."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.support import wait_for

from .harness import AGENT, write_config

HEADER = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
"""

needs_root = pytest.mark.skipif(os.getuid() != 0, reason="switching users needs root")


@pytest.fixture
def open_dir():
    """A directory another user can reach (pytest's tmp dirs sit under a root-only 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="fleetvisor-test-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def conf(tmp_path, programs: str, header: str = HEADER):
    return write_config(tmp_path, header + textwrap.dedent(programs))


def read_when_written(path, timeout=5.0) -> str:
    return wait_for(lambda: path.exists() and path.read_text().endswith("\n") and path.read_text(), timeout)


@needs_root
def test_user_switch_sets_uid_gid_and_groups(open_dir, daemons):
    tmp_path = open_dir
    out = tmp_path / "id.txt"
    nobody = pwd.getpwnam("nobody")
    d = daemons(conf(tmp_path, f"""
        [program:who]
        command=/bin/sh -c "echo $(id -u) $(id -g) > {out}; exec sleep 1000"
        user=nobody
        startsecs=0
    """))
    d.wait_line(r"success: who entered RUNNING")
    assert read_when_written(out).split() == [str(nobody.pw_uid), str(nobody.pw_gid)]


def test_umask_and_directory(tmp_path, daemons):
    workdir = tmp_path / "work"
    workdir.mkdir()
    d = daemons(conf(tmp_path, """
        [program:maker]
        command=/bin/sh -c "pwd > where.txt; touch made; exec sleep 1000"
        directory=%(here)s/work
        umask=027
        startsecs=0
    """))
    d.wait_line(r"success: maker entered RUNNING")
    assert read_when_written(workdir / "where.txt").strip() == str(workdir)
    made = wait_for(lambda: (workdir / "made").exists() and workdir / "made", 5)
    assert stat.S_IMODE(made.stat().st_mode) == 0o640


def test_command_found_on_programs_own_path(tmp_path, daemons):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "mytool"
    tool.write_text("#!/bin/sh\necho found-on-path\nexec sleep 1000\n")
    tool.chmod(0o755)
    d = daemons(conf(tmp_path, f"""
        [program:tool]
        command=mytool
        environment=PATH="{bindir}:/usr/bin:/bin"
        stdout_logfile=%(here)s/tool.log
        startsecs=0
    """))
    d.wait_line(r"success: tool entered RUNNING")
    assert read_when_written(tmp_path / "tool.log") == "found-on-path\n"


def test_not_executable_command_is_a_spawn_error(tmp_path, daemons):
    script = tmp_path / "plain.sh"
    script.write_text("echo hi\n")
    d = daemons(conf(tmp_path, f"""
        [program:plain]
        command={script}
        startretries=0
    """))
    d.wait_line(rf"^INFO spawnerr: command at '{script}' is not executable")
    d.wait_line(r"gave up: plain entered FATAL state")


def test_bad_directory_is_a_spawn_error(tmp_path, daemons):
    d = daemons(conf(tmp_path, """
        [program:lost]
        command=sleep 1000
        directory=/no/such/dir
        startretries=0
    """))
    d.wait_line(r"^INFO spawnerr: couldn't chdir to /no/such/dir: ENOENT")


def test_debug_level_copies_child_output_to_main_log(tmp_path, daemons):
    d = daemons(conf(tmp_path, r"""
        [program:talker]
        command=/bin/sh -c "printf 'hello\n'; exec sleep 1000"
        startsecs=0
        [program:binary]
        command=/bin/sh -c "printf '\377\376\n'; exec sleep 1000"
        startsecs=0
    """), extra_args=("-e", "debug"))
    d.wait_line(r"^DEBG 'talker' stdout output:")
    d.wait_line(r"^hello$")
    d.wait_line(r"^DEBG 'binary' stdout output:")
    d.wait_line(r"^Undecodable: b'\\xff\\xfe\\n'$")


def test_strip_ansi_flag(tmp_path, daemons):
    d = daemons(conf(tmp_path, r"""
        [program:colour]
        command=/bin/sh -c "printf '\033[31mred\033[0m\n'; exec sleep 1000"
        stdout_logfile=%(here)s/colour.log
        startsecs=0
    """), extra_args=("-t",))
    d.wait_line(r"success: colour entered RUNNING")
    assert read_when_written(tmp_path / "colour.log") == "red\n"


def test_logfile_and_identifier_flags_override_config(tmp_path, daemons):
    d = daemons(conf(tmp_path, """
        [program:auto]
        command=/bin/sh -c "echo x; exec sleep 1000"
        startsecs=0
    """), extra_args=("-l", str(tmp_path / "other.log"), "-i", "myid"))
    d.wait_line(r"success: auto entered RUNNING")
    assert "success: auto" in (tmp_path / "other.log").read_text()
    assert not (tmp_path / "main.log").exists()
    wait_for(lambda: list(tmp_path.glob("auto-stdout---myid-*.log")), 5)


def test_version_help_and_bad_flags():
    version = subprocess.run([*AGENT, "-v"], capture_output=True, text=True, timeout=20)
    assert version.returncode == 0 and version.stdout.strip() == "4.3.0"
    helptext = subprocess.run([*AGENT, "-h"], capture_output=True, text=True, timeout=20)
    assert helptext.returncode == 0 and "-c/--configuration" in helptext.stdout
    bad = subprocess.run([*AGENT, "--bogus"], capture_output=True, text=True, timeout=20)
    assert bad.returncode == 2
    assert bad.stderr.startswith("Error: option --bogus not recognized") and "Traceback" not in bad.stderr
    badvalue = subprocess.run([*AGENT, "-m", "999"], capture_output=True, text=True, timeout=20)
    assert badvalue.returncode == 2 and "invalid value for -m '999'" in badvalue.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = subprocess.run([*AGENT, "-c", str(tmp_path / "nope.conf")], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ") and "nope.conf" in result.stderr
    assert "Traceback" not in result.stderr


@needs_root
def test_daemon_user_drops_privileges(open_dir, daemons):
    tmp_path = open_dir
    out = tmp_path / "id.txt"
    d = daemons(conf(tmp_path, f"""
        [program:who]
        command=/bin/sh -c "id -u > {out}; exec sleep 1000"
        startsecs=0
    """, HEADER + "user=nobody\n"))
    d.wait_line(r"^INFO Set uid to user nobody succeeded")
    assert read_when_written(out).strip() == str(pwd.getpwnam("nobody").pw_uid)
    assert not any("running as root" in m for m in d.messages())


def test_minfds_raises_the_limit_or_refuses_to_start(tmp_path, daemons):
    """Below minfds the agent raises its limit (logging it) or, if it may not, exits 2 and says why."""
    import sys
    limited = ["prlimit", "--nofile=512:512"]
    may_raise = subprocess.run([*limited, sys.executable, "-c",
                                "import resource as r; r.setrlimit(r.RLIMIT_NOFILE, (2048, 2048))"],
                               capture_output=True, timeout=20).returncode == 0
    config = conf(tmp_path, """
        [program:fds]
        command=/bin/sh -c "ulimit -n; exec sleep 1000"
        stdout_logfile=%(here)s/fds.log
        startsecs=0
    """, HEADER + "minfds=2048\n")
    if not may_raise:
        result = subprocess.run([*limited, *AGENT, "-c", str(config), "-n"], capture_output=True, text=True,
                                timeout=20)
        assert result.returncode == 2
        assert result.stderr.startswith("Error: The minimum number of file descriptors required to run "
                                        "this process is 2048")
        return
    d = daemons(config, [*limited, *AGENT])
    d.wait_line(r"^INFO Increased RLIMIT_NOFILE limit to 2048")
    assert read_when_written(tmp_path / "fds.log").strip() == "2048"
