"""The agent with its logs on a full disk: a small tmpfs as the child log dir or the main log's.

Writes that fail are dropped, the processes keep running and being supervised, and the main
log says so once when a log starts failing and once when it is written again. A rotation
that cannot make the new file (no inode left) does not stop logging for good: the file is
opened again once it can be. Mounting needs root; elsewhere these tests are skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import sys
import textwrap
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, wait_for

from .exhaustion import LatencyProbe, probed_config

CHATTY = f"{sys.executable} {Path(__file__).parent / 'programs' / 'numbered_lines.py'}"


@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, name: str = "filler") -> Path:
    """Take every free block of the filesystem with one file."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return path


def fill_inodes(directory: Path) -> list[Path]:
    """Take every free inode of the filesystem with empty files."""
    made = []
    with contextlib.suppress(OSError):
        while True:
            path = directory / f"inode-{len(made)}"
            path.touch()
            made.append(path)
    return made


def numbers(log: Path) -> list[int]:
    return [int(n) for n in re.findall(rb"line (\d{9}) ", log.read_bytes())]


def rpc(port: int) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")


def config(directory: Path, port: int, *, mainlog: Path, childlogs: Path, chatty: str = "") -> Path:
    return probed_config(directory, port, f"""
        [program:sleeper]
        command=sleep 1000
        startsecs=0
        stdout_logfile={childlogs}/sleeper.log
        """, chatty, supervisord=f"logfile={mainlog}\nchildlogdir={childlogs}\n")


def test_child_logs_on_a_full_disk(tmp_path, daemons):
    with tmpfs(tmp_path / "logs", "size=1m") as logs:
        port = free_port()
        chatty_log = logs / "chatty.log"
        conf = config(tmp_path, port, mainlog=tmp_path / "main.log", childlogs=logs, chatty=textwrap.dedent(f"""
            [program:chatty]
            command={CHATTY}
            startsecs=0
            redirect_stderr=true
            stdout_logfile={chatty_log}
            stdout_logfile_maxbytes=50MB
            """))
        filler = fill(logs)
        os.truncate(filler, filler.stat().st_size - 64 * 1024)  # 64 KB left for the log
        d = daemons(conf)
        failing = rf"ERRO cannot write log {re.escape(str(chatty_log))}: No space left on device; its output is dropped"
        with LatencyProbe(port) as probe:
            d.wait_line(failing, timeout=20)
            before = numbers(chatty_log)[-1]
            # Supervision goes on: a killed process is restarted (its log is opened on the full disk).
            os.kill(d.pid_of("sleeper"), signal.SIGKILL)
            d.wait_line(r"spawned: 'sleeper' with pid", count=2)
            wait_for(lambda: rpc(port).supervisor.getProcessInfo("sleeper")["statename"] == "RUNNING", 10, "back")
            chatty = rpc(port).supervisor.getProcessInfo("chatty")
            assert chatty["statename"] == "RUNNING"
            # Space comes back: the log is written again, from lines the child wrote meanwhile.
            filler.unlink()
            again = d.wait_line(rf"INFO log {re.escape(str(chatty_log))} is written again \((\d+) bytes were dropped\)")
            wait_for(lambda: numbers(chatty_log)[-1] > before + 200, 10, "lines after the gap")
        probe.assert_bounded()
        assert int(again[0].group(1)) > 0
        assert rpc(port).supervisor.getProcessInfo("chatty")["pid"] == chatty["pid"]
        seen = numbers(chatty_log)
        assert any(b - a > 1 for a, b in zip(seen, seen[1:])), "no gap: nothing was dropped"
        messages = d.messages()
        # Once each way, not once per failed write.
        assert sum(bool(re.search(failing, m)) for m in messages) == 1
        assert sum("is written again" in m for m in messages) == 1


def test_main_log_on_a_full_disk(tmp_path, daemons):
    with tmpfs(tmp_path / "logs", "size=1m") as logs:
        port = free_port()
        main_log = logs / "main.log"
        d = daemons(config(tmp_path, port, mainlog=main_log, childlogs=tmp_path))
        d.wait_line(r"success: sleeper entered RUNNING state")
        filler = fill(logs)
        with LatencyProbe(port) as probe:
            # Main-log lines, with the daemon at work, until the file's last page is full too
            # and the echo on stdout says the log cannot be written; then some more.
            failing = rf"ERRO cannot write log {re.escape(str(main_log))}: No space left on device"
            for _ in range(200):
                assert rpc(port).supervisor.stopProcess("sleeper") is True
                assert rpc(port).supervisor.startProcess("sleeper") is True
                if any(re.search(failing, m) for m in d.messages()):
                    break
            for _ in range(5):
                assert rpc(port).supervisor.stopProcess("sleeper") is True
                assert rpc(port).supervisor.startProcess("sleeper") is True
            d.wait_line(failing)
            assert "stopped: sleeper" not in main_log.read_text().split("success: sleeper")[-1]
            filler.unlink()
            rpc(port).supervisor.stopProcess("sleeper")
        probe.assert_bounded()
        assert sum("cannot write log" in m for m in d.messages()) == 1
        text = wait_for(lambda: "stopped: sleeper" in main_log.read_text() and main_log.read_text(), 10, "resumed")
        assert len(re.findall(rf"INFO log {re.escape(str(main_log))} is written again \(\d+ bytes were dropped\)",
                              text)) == 1


def test_rotation_without_a_free_inode_resumes_when_one_frees(tmp_path, daemons):
    with tmpfs(tmp_path / "logs", "size=4m,nr_inodes=16") as logs:
        port = free_port()
        chatty_log = logs / "chatty.log"
        conf = config(tmp_path, port, mainlog=tmp_path / "main.log", childlogs=tmp_path,
                      chatty=textwrap.dedent(f"""
            [program:chatty]
            command={CHATTY}
            startsecs=0
            stdout_logfile={chatty_log}
            stdout_logfile_maxbytes=256KB
            stdout_logfile_backups=3
            """))
        d = daemons(conf)
        d.wait_line(r"success: chatty entered RUNNING state")
        wait_for(lambda: (logs / "chatty.log.1").exists(), 20, "a first rotation")
        # Until .3 exists a rotation needs a new inode: it renames, then cannot create the file.
        spare = fill_inodes(logs)
        with LatencyProbe(port) as probe:
            d.wait_line(rf"ERRO cannot write log {re.escape(str(chatty_log))}: No space left on device", timeout=20)
            assert rpc(port).supervisor.getProcessInfo("chatty")["statename"] == "RUNNING"
            for path in spare:
                path.unlink()
            d.wait_line(rf"INFO log {re.escape(str(chatty_log))} is written again", timeout=10)
            wait_for(lambda: chatty_log.exists() and numbers(chatty_log), 10, "lines in the new file")
        probe.assert_bounded()
        assert sum("cannot write log" in m for m in d.messages()) == 1
