"""The agent supervising real processes: lifecycle, logs and daemon duties, seen from outside."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import pid_alive, wait_for

from .harness import AGENT, write_config

HEADER = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
loglevel=info
"""


def conf(tmp_path: Path, programs: str, header: str = HEADER) -> Path:
    return write_config(tmp_path, header + textwrap.dedent(programs))


def index_of(lines: list[str], pattern: str) -> int:
    regex = re.compile(pattern)
    for i, line in enumerate(lines):
        if regex.search(line):
            return i
    raise AssertionError(f"{pattern!r} not in log:\n" + "\n".join(lines))


def test_start_runs_with_supervisor_environment(tmp_path, daemons):
    out = tmp_path / "env.txt"
    config = conf(tmp_path, f"""
        [program:envdump]
        command=/bin/sh -c "env > {out}; exec sleep 1000"
        environment=COLOR="blue",PATH="/usr/bin:/bin"
        startsecs=0
        directory={tmp_path}
    """)
    d = daemons(config)
    d.wait_line(r"^INFO success: envdump entered RUNNING state, process has stayed up for > than 0 seconds")
    env = dict(line.split("=", 1) for line in wait_for(lambda: out.exists() and out.read_text(), 5).splitlines()
               if "=" in line)
    assert env["SUPERVISOR_ENABLED"] == "1"
    assert env["SUPERVISOR_PROCESS_NAME"] == "envdump"
    assert env["SUPERVISOR_GROUP_NAME"] == "envdump"
    assert env["COLOR"] == "blue"
    assert env["PWD"] == str(tmp_path) or Path(env.get("PWD", tmp_path)) == tmp_path
    assert "SUPERVISOR_SERVER_URL" not in env  # no http server configured


def test_crash_backoff_then_fatal(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:crasher]
        command=/bin/sh -c "exit 3"
        startsecs=1
        startretries=2
    """)
    d = daemons(config)
    d.wait_line(r"^INFO gave up: crasher entered FATAL state, too many start retries too quickly", timeout=15)
    msgs = d.messages()
    assert sum("WARN exited: crasher (exit status 3; not expected)" in m for m in msgs) == 3
    assert sum("spawned: 'crasher'" in m for m in msgs) == 3


def test_missing_command_goes_fatal_and_others_run(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:ghost]
        command=/no/such/binary --flag
        startretries=1
        [program:good]
        command=sleep 1000
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"^INFO spawnerr: can't find command '/no/such/binary'")
    d.wait_line(r"^INFO gave up: ghost entered FATAL state", timeout=10)
    d.wait_line(r"^INFO success: good entered RUNNING state")
    assert pid_alive(d.pid_of("good"))


def test_autorestart_unexpected_honours_exitcodes(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:expected]
        command=/bin/sh -c "sleep 0.3; exit 2"
        exitcodes=0,2
        startsecs=0
        [program:unexpected]
        command=/bin/sh -c "sleep 0.3; exit 1"
        exitcodes=0,2
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"^INFO exited: expected \(exit status 2; expected\)")
    d.wait_line(r"^WARN exited: unexpected \(exit status 1; not expected\)", count=2)
    assert sum("spawned: 'expected'" in m for m in d.messages()) == 1


def test_autorestart_true_restarts_clean_exit(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:always]
        command=/bin/sh -c "sleep 0.2; exit 0"
        autorestart=true
        startsecs=0
        [program:never]
        command=/bin/sh -c "sleep 0.2; exit 1"
        autorestart=false
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"spawned: 'always'", count=3)
    assert sum("spawned: 'never'" in m for m in d.messages()) == 1


def test_stopwaitsecs_escalates_to_sigkill(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:stubborn]
        command=/bin/sh -c "trap '' TERM; while :; do sleep 0.1; done"
        stopwaitsecs=1
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: stubborn entered RUNNING")
    pid = d.pid_of("stubborn")
    d.signal(signal.SIGTERM)
    d.wait_line(rf"^WARN killing 'stubborn' \({pid}\) with SIGKILL", timeout=5)
    d.wait_line(r"^WARN stopped: stubborn \(terminated by SIGKILL\)")
    assert d.proc.wait(10) == 0
    assert not pid_alive(pid)


def test_stopasgroup_kills_grandchildren(tmp_path, daemons):
    marker = tmp_path / "grandchild.pid"
    config = conf(tmp_path, f"""
        [program:family]
        command=/bin/sh -c "sleep 1000 & echo $! > {marker}; wait"
        stopasgroup=true
        killasgroup=true
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: family entered RUNNING")
    grandchild = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), 5))
    assert pid_alive(grandchild)
    d.stop()
    wait_for(lambda: not pid_alive(grandchild), 5, "grandchild to die")


def test_without_stopasgroup_grandchild_survives(tmp_path, daemons):
    marker = tmp_path / "grandchild.pid"
    config = conf(tmp_path, f"""
        [program:family]
        command=/bin/sh -c "sleep 1000 & echo $! > {marker}; wait"
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: family entered RUNNING")
    grandchild = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), 5))
    d.stop()
    try:
        assert pid_alive(grandchild)  # the control case: only the group signal reaches it
    finally:
        os.kill(grandchild, signal.SIGKILL)


def test_numprocs_names_and_process_num(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:web]
        command=/bin/sh -c "echo num=%(process_num)s; exec sleep 1000"
        process_name=%(program_name)s_%(process_num)02d
        numprocs=3
        numprocs_start=1
        startsecs=0
        stdout_logfile=%(here)s/%(program_name)s_%(process_num)s.out
    """)
    d = daemons(config)
    for n in (1, 2, 3):
        d.wait_line(rf"success: web_0{n} entered RUNNING")
        wait_for(lambda: (tmp_path / f"web_{n}.out").exists()
                 and (tmp_path / f"web_{n}.out").read_text() == f"num={n}\n", 5)


def test_priority_order_at_start_and_at_shutdown(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:late]
        command=sleep 1000
        priority=300
        startsecs=0
        [program:early]
        command=sleep 1000
        priority=100
        startsecs=0
        [program:middle]
        command=sleep 1000
        priority=200
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: (late|early|middle)", count=3)
    lines = d.messages()
    spawned = [index_of(lines, rf"spawned: '{n}'") for n in ("early", "middle", "late")]
    assert spawned == sorted(spawned)
    assert d.stop() == 0
    lines = d.messages()
    stopped = [index_of(lines, rf"stopped: {n} ") for n in ("late", "middle", "early")]
    assert stopped == sorted(stopped)


def test_groups_stop_one_after_another(tmp_path, daemons):
    """A group with a slow stopper must be fully stopped before the next group is asked."""
    config = conf(tmp_path, """
        [program:slow]
        command=/bin/sh -c "trap 'sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done"
        priority=900
        startsecs=0
        [program:fast]
        command=sleep 1000
        priority=100
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: (slow|fast)", count=2)
    assert d.stop() == 0
    lines = d.messages()
    assert index_of(lines, r"stopped: slow ") < index_of(lines, r"stopped: fast ")


def test_child_log_rotation(tmp_path, daemons):
    # Four bursts of ~5 KB; like supervisord, a write that takes the file past maxbytes is
    # followed by a rollover. How the pipe splits the bursts into reads varies, so the checks
    # are what holds for any split: backups are numbered and capped, the newest burst is kept.
    config = conf(tmp_path, """
        [program:chatty]
        command=/bin/sh -c "for n in 1 2 3 4; do i=0; while [ $i -lt 50 ]; do echo chunk-$n-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done; sleep 0.3; done; exec sleep 1000"
        stdout_logfile=%(here)s/chatty.log
        stdout_logfile_maxbytes=4KB
        stdout_logfile_backups=2
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: chatty entered RUNNING")
    files = [tmp_path / name for name in ("chatty.log.2", "chatty.log.1", "chatty.log")]

    def newest_burst_lines() -> int:
        return sum(p.read_text().count("chunk-4-") for p in files if p.exists())
    # each rotated file holds >= 4 KB, so two backups always keep all of the last 5 KB burst
    wait_for(lambda: newest_burst_lines() == 50, 10, "the last burst in the logs")
    assert files[0].exists() and files[1].exists()
    assert not (tmp_path / "chatty.log.3").exists()  # backups=2
    assert all(p.stat().st_size >= 4096 for p in files[:2])


CHATTY = """
import random, sys
rng = random.Random(7)
data = rng.randbytes(3_000_000)
i = 0
while i < len(data):  # odd-sized writes, so reads would not line up with maxbytes
    n = rng.randint(1, 20_000)
    sys.stdout.buffer.write(data[i:i + n])
    sys.stdout.buffer.flush()
    i += n
"""


def test_chatty_output_lands_intact_through_rotation(tmp_path, daemons):
    # Nothing but the file wants these bytes: they are spliced from pipe to file, each move
    # capped at maxbytes, so every rotated file is exactly maxbytes and the files joined in
    # order are the stream. The child exits at once: what is left in the pipe is drained.
    (tmp_path / "chatty.py").write_text(CHATTY)
    config = conf(tmp_path, f"""
        [program:chatty]
        command={sys.executable} %(here)s/chatty.py
        stdout_logfile=%(here)s/chatty.log
        stdout_logfile_maxbytes=256KB
        stdout_logfile_backups=20
        startsecs=0
        autorestart=false
    """)
    d = daemons(config)
    d.wait_line(r"exited: chatty \(exit status 0; expected\)", timeout=30)
    stream = random.Random(7).randbytes(3_000_000)
    count = len(stream) // (256 * 1024)
    rotated = [tmp_path / f"chatty.log.{i}" for i in range(count, 0, -1)]
    assert [p.stat().st_size for p in rotated] == [256 * 1024] * count
    assert not (tmp_path / f"chatty.log.{count + 1}").exists()
    joined = b"".join(p.read_bytes() for p in [*rotated, tmp_path / "chatty.log"])
    assert hashlib.sha256(joined).hexdigest() == hashlib.sha256(stream).hexdigest()


def test_auto_logs_in_childlogdir_and_cleanup(tmp_path, daemons):
    stale = tmp_path / "old-stdout---supervisor-abc123.log"
    stale.write_text("from a previous run")
    kept = tmp_path / "unrelated.log"
    kept.write_text("keep me")
    config = conf(tmp_path, """
        [program:auto]
        command=/bin/sh -c "echo to-stdout; echo to-stderr >&2; exec sleep 1000"
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: auto entered RUNNING")
    assert not stale.exists() and kept.exists()
    out = wait_for(lambda: [p for p in tmp_path.glob("auto-stdout---supervisor-*.log") if p.read_text()], 5)
    err = wait_for(lambda: [p for p in tmp_path.glob("auto-stderr---supervisor-*.log") if p.read_text()], 5)
    assert out[0].read_text() == "to-stdout\n" and err[0].read_text() == "to-stderr\n"


def test_redirect_stderr_and_none(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:merged]
        command=/bin/sh -c "echo out; echo err >&2; exec sleep 1000"
        redirect_stderr=true
        stdout_logfile=%(here)s/merged.log
        startsecs=0
        [program:silent]
        command=/bin/sh -c "echo nothing; exec sleep 1000"
        stdout_logfile=NONE
        stderr_logfile=NONE
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: (merged|silent)", count=2)
    wait_for(lambda: sorted((tmp_path / "merged.log").read_text().split()) == ["err", "out"], 5)
    assert not list(tmp_path.glob("merged-stderr---*")) and not list(tmp_path.glob("silent-std*"))


def test_daemonize_and_pidfile(tmp_path):
    config = conf(tmp_path, """
        [program:bg]
        command=sleep 1000
        startsecs=0
    """)
    pidfile = tmp_path / "supervisord.pid"
    launcher = subprocess.run([*AGENT, "-c", str(config)], cwd=tmp_path, timeout=20,
                              capture_output=True)
    assert launcher.returncode == 0, launcher.stderr
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10))
    try:
        assert pid_alive(pid)
        log = tmp_path / "main.log"
        wait_for(lambda: "success: bg entered RUNNING" in log.read_text(), 10)
        text = log.read_text()
        assert "INFO daemonizing the supervisord process" in text
        assert f"INFO supervisord started with pid {pid}" in text
        assert os.getsid(pid) == pid  # its own session
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), 15, "daemon to exit")
    assert not pidfile.exists()


def test_sighup_restarts_with_reread_config(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:one]
        command=sleep 1000
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: one entered RUNNING")
    config.write_text(config.read_text() + "[program:two]\ncommand=sleep 1000\nstartsecs=0\n")
    d.signal(signal.SIGHUP)
    d.wait_line(r"^WARN received SIGHUP indicating restart request")
    d.wait_line(r"stopped: one \(terminated by SIGTERM\)")
    d.wait_line(r"success: two entered RUNNING")
    d.wait_line(r"success: one entered RUNNING", count=2)
    assert len(d.wait_line(r"supervisord started with pid")) == 2


def test_sighup_with_broken_config_keeps_running(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:one]
        command=sleep 1000
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: one entered RUNNING")
    pid = d.pid_of("one")
    config.write_text(config.read_text() + "[program:bad]\nnumprocs=zero\ncommand=x\n")
    d.signal(signal.SIGHUP)
    d.wait_line(r"^ERRO restart refused, the config file is not valid: .*numprocs")
    assert pid_alive(pid) and d.proc.poll() is None
    assert not any("stopped: one" in m for m in d.messages())


def test_supervisorctl_reload_with_broken_config_logs_the_refusal(tmp_path, daemons):
    """The XML-RPC restart (supervisorctl reload) refuses a broken file as SIGHUP does, and
    says so in the main log too, not only to the client that asked."""
    config = conf(tmp_path, """
        [program:one]
        command=sleep 1000
        startsecs=0
    """, HEADER + f"""
[unix_http_server]
file={tmp_path}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{tmp_path}/supervisor.sock
""")
    d = daemons(config)
    d.wait_line(r"success: one entered RUNNING")
    pid = d.pid_of("one")
    config.write_text(config.read_text() + "[program:bad]\nnumprocs=zero\ncommand=x\n")
    ctl = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(config), "reload"],
                         capture_output=True, text=True, timeout=30)
    assert ctl.returncode != 0 and "numprocs" in ctl.stdout + ctl.stderr, ctl
    d.wait_line(r"^ERRO restart refused, the config file is not valid: .*numprocs")
    assert pid_alive(pid) and d.proc.poll() is None
    assert not any("stopped: one" in m for m in d.messages())


def test_sigusr2_reopens_logs(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:writer]
        command=/bin/sh -c "while :; do echo tick; sleep 0.05; done"
        stdout_logfile=%(here)s/writer.log
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: writer entered RUNNING")
    wait_for(lambda: (tmp_path / "writer.log").exists(), 5)
    os.rename(tmp_path / "writer.log", tmp_path / "writer.log.moved")
    os.rename(tmp_path / "main.log", tmp_path / "main.log.moved")
    d.signal(signal.SIGUSR2)
    d.wait_line(r"^INFO received SIGUSR2 indicating log reopen request")
    wait_for(lambda: (tmp_path / "writer.log").exists() and "tick" in (tmp_path / "writer.log").read_text(), 5)
    wait_for(lambda: (tmp_path / "main.log").exists(), 5)


def test_sigterm_orderly_shutdown_logs(tmp_path, daemons):
    config = conf(tmp_path, """
        [program:cat]
        command=cat
        startsecs=0
    """)
    d = daemons(config)
    d.wait_line(r"success: cat entered RUNNING")
    pid = d.pid_of("cat")
    assert d.stop() == 0
    msgs = d.messages()
    assert "WARN received SIGTERM indicating exit request" in msgs
    assert "WARN stopped: cat (terminated by SIGTERM)" in msgs
    assert not pid_alive(pid)


def test_bad_config_exits_2_and_starts_nothing(tmp_path):
    config = conf(tmp_path, """
        [program:x]
        command=sleep 1000
        stopasgroup=true
        killasgroup=false
    """)
    result = subprocess.run([*AGENT, "-c", str(config), "-n"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith("Error: ") and "program:x" in first and "Traceback" not in result.stderr
    assert not (tmp_path / "supervisord.pid").exists()


def test_many_programs_start_and_stop(tmp_path, daemons):
    count = 300
    programs = "".join(f"[program:p{i}]\ncommand=sleep 1000\nstartsecs=0\nstdout_logfile=NONE\n"
                       f"stderr_logfile=NONE\n" for i in range(count))
    config = conf(tmp_path, programs, HEADER + "minfds=4096\n")
    d = daemons(config)
    d.wait_line(r"success: p\d+ entered RUNNING", count=count, timeout=60)
    assert d.stop(timeout=60) == 0
    assert sum("stopped: p" in m for m in d.messages()) == count
