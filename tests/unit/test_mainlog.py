"""The daemon's main log: supervisord's line format, levels, echo, rotation, reopen, syslog."""

from __future__ import annotations

import os
import re

import pytest
from supervisor.loggers import LevelsByName

from fleetvisor.agent.mainlog import BootLog, Level, MainLog, level_from_name

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (CRIT|ERRO|WARN|INFO|DEBG|TRAC|BLAT) ")


def make(path, level=Level.INFO, maxbytes=0, backups=0, **kw) -> MainLog:
    path = str(path) if path else None
    return MainLog(path, maxbytes=maxbytes, backups=backups, level=level, **kw)


def lines(path) -> list[str]:
    return open(path, encoding="utf-8").read().splitlines(keepends=True)


def test_levels_match_supervisord():
    for level in Level:
        assert getattr(LevelsByName, level.name) == level.value


@pytest.mark.parametrize(
    "name, level",
    [("critical", Level.CRIT), ("error", Level.ERRO), ("warn", Level.WARN), ("info", Level.INFO),
     ("debug", Level.DEBG), ("trace", Level.TRAC), ("blather", Level.BLAT), ("DeBuG", Level.DEBG)],
)
def test_level_from_name(name, level):
    assert level_from_name(name) is level


@pytest.mark.parametrize("name", ["warning", "crit", "", "notalevel"])
def test_level_from_name_rejects_what_supervisord_rejects(name):
    with pytest.raises(ValueError, match="bad logging level name"):
        level_from_name(name)


def test_line_format_and_level_filter(tmp_path):
    path = tmp_path / "supervisord.log"
    log = make(path, level=Level.INFO)
    log.debug("hidden")
    log.info("spawned: 'x' with pid 42")
    log.warn("careful")
    log.log(Level.CRIT, "multi\nline")
    log.blather("hidden too")
    log.close()
    got = lines(path)
    assert [LINE.match(x).group(1) for x in got if LINE.match(x)] == ["INFO", "WARN", "CRIT"]
    assert got[0].endswith(" INFO spawned: 'x' with pid 42\n")
    assert got[2].endswith(" CRIT multi\n") and got[3] == "line\n"
    assert log.is_enabled(Level.INFO) and not log.is_enabled(Level.DEBG)


def test_echo_stdout(tmp_path, capsys):
    log = make(tmp_path / "m.log", echo_stdout=True)
    log.info("hello")
    log.debug("nope")
    out = capsys.readouterr().out
    assert LINE.match(out) and out.endswith(" INFO hello\n") and out.count("\n") == 1
    assert open(tmp_path / "m.log").read() == out


def test_no_path_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = make(None)
    log.critical("into the void")
    log.reopen()
    log.close()
    assert os.listdir(tmp_path) == [] and capsys.readouterr().out == ""


def test_appends_to_existing_file(tmp_path):
    path = tmp_path / "m.log"
    path.write_text("old\n")
    make(path).info("new")
    assert lines(path)[0] == "old\n" and lines(path)[1].endswith("INFO new\n")


def test_rotation_names_and_count(tmp_path):
    path = tmp_path / "m.log"
    log = make(path, maxbytes=100, backups=2)
    for i in range(20):
        log.info(f"message number {i:02d} padded out to be long-ish")
    log.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["m.log", "m.log.1", "m.log.2"]
    # newest backup is .1: its last line comes right before the live file's first line
    last_in_1 = int(lines(f"{path}.1")[-1].split("number ")[1][:2])
    first_in_2 = int(lines(f"{path}.2")[0].split("number ")[1][:2])
    assert first_in_2 < last_in_1
    assert os.path.getsize(f"{path}.1") >= 100


def test_backups_zero_truncates(tmp_path):
    path = tmp_path / "m.log"
    log = make(path, maxbytes=60, backups=0)
    for i in range(5):
        log.info(f"line {i} " + "x" * 40)
    assert os.listdir(tmp_path) == ["m.log"]
    assert os.path.getsize(path) == 0  # every line crossed maxbytes and truncated
    log.info("short")
    assert lines(path)[0].endswith("INFO short\n")


def test_maxbytes_zero_on_fifo_never_rotates(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = make(fifo, maxbytes=0, backups=3)
        for _ in range(10):
            log.info("through the pipe")
        log.close()
        data = os.read(reader, 65536).decode()
    finally:
        os.close(reader)
    assert data.count("INFO through the pipe\n") == 10
    assert os.listdir(tmp_path) == ["pipe"]


def test_maxbytes_set_on_fifo_is_ignored(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = make(fifo, maxbytes=10, backups=3)
        log.info("longer than ten bytes")
        log.info("again")
        data = os.read(reader, 65536).decode()
    finally:
        os.close(reader)
    assert data.count("\n") == 2 and os.listdir(tmp_path) == ["pipe"]


def test_dev_stdout(capfd):
    # Under capfd, fd 1 is a regular file: it must still never be rotated (renamed).
    log = make("/dev/stdout", maxbytes=10, backups=2)
    log.info("to stdout")
    log.info("and again")
    log.close()
    out = capfd.readouterr().out
    assert out.count("INFO to stdout\n") == 1 and out.count("INFO and again\n") == 1


def test_reopen_after_move(tmp_path):
    path = tmp_path / "m.log"
    log = make(path, maxbytes=1000, backups=1)
    log.info("before")
    os.rename(path, tmp_path / "m.log.moved")
    log.info("still old fd")
    log.reopen()
    log.info("after")
    log.close()
    moved = lines(tmp_path / "m.log.moved")
    assert [x.split(" INFO ")[1] for x in moved] == ["before\n", "still old fd\n"]
    assert [x.split(" INFO ")[1] for x in lines(path)] == ["after\n"]


def test_clear(tmp_path):
    path = tmp_path / "m.log"
    log = make(path)
    log.info("one")
    log.clear()
    assert os.path.getsize(path) == 0
    log.info("two")
    assert lines(path)[0].endswith("two\n")


def test_bootlog_replay_in_supervisord_order(tmp_path):
    boot = BootLog()
    boot.info('Included extra file "/etc/a.conf" during parsing')
    boot.critical("Server 'inet_http_server' running without any HTTP authentication checking")
    boot.warn("w1")
    boot.info("i2")
    boot.debug("below level")
    path = tmp_path / "m.log"
    make(path).replay(boot.records)
    got = [x.split(" ", 2)[2] for x in lines(path)]
    assert got == [
        "CRIT Server 'inet_http_server' running without any HTTP authentication checking\n",
        "WARN w1\n",
        'INFO Included extra file "/etc/a.conf" during parsing\n',
        "INFO i2\n",
    ]


def test_syslog(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sent: list[str] = []
    log = make("syslog", maxbytes=50, backups=10, syslog_fn=sent.append)
    log.info("one\ntwo\n")
    log.debug("filtered")
    log.reopen()
    log.close()
    assert len(sent) == 2
    assert LINE.match(sent[0]) and sent[0].endswith(" INFO one\n")
    assert sent[1].endswith(" INFO two\n") and sent[0][:23] == sent[1][:23]
    assert os.listdir(tmp_path) == []  # no file called "syslog"
