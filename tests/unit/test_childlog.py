"""A process's output log: raw writes, rotation, reopen, syslog, strip_ansi, readers."""

from __future__ import annotations

import itertools
import os

import pytest
from supervisor.dispatchers import stripEscapes
from supervisor.options import readFile, tailFile

from fleetvisor.agent.childlog import (
    BadArguments,
    ChildLog,
    Failed,
    NoFile,
    debug_line,
    read_log,
    strip_ansi,
    tail_log,
)


def make(path, maxbytes=0, backups=0, **kw) -> ChildLog:
    return ChildLog(str(path) if path else None, maxbytes=maxbytes, backups=backups, **kw)


def test_writes_raw_bytes_and_appends(tmp_path):
    path = tmp_path / "out.log"
    path.write_bytes(b"old\n")
    log = make(path, maxbytes=1 << 20, backups=2)
    log.write(b"partial")
    log.write(b" line\n\xff\x00binary\n")
    log.write(b"")
    log.close()
    assert path.read_bytes() == b"old\npartial line\n\xff\x00binary\n"


def test_rotation_names_and_count(tmp_path):
    path = tmp_path / "out.log"
    log = make(path, maxbytes=10, backups=3)
    for i in range(6):
        log.write(b"%d" % i * 10)  # each chunk reaches maxbytes: rotate after each
    log.write(b"live")
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["out.log", "out.log.1", "out.log.2", "out.log.3"]
    assert path.read_bytes() == b"live"
    backups = [open(f"{path}.{i}", "rb").read() for i in (1, 2, 3)]
    assert backups == [b"5" * 10, b"4" * 10, b"3" * 10]  # .1 is the newest


def test_rotation_counts_existing_size(tmp_path):
    path = tmp_path / "out.log"
    path.write_bytes(b"12345678")
    log = make(path, maxbytes=10, backups=1)
    log.write(b"9")
    assert not os.path.exists(f"{path}.1")
    log.write(b"0")
    assert open(f"{path}.1", "rb").read() == b"1234567890" and path.read_bytes() == b""


def test_backups_zero_truncates(tmp_path):
    path = tmp_path / "out.log"
    log = make(path, maxbytes=8, backups=0)
    log.write(b"0123456789")
    log.write(b"abc")
    assert os.listdir(tmp_path) == ["out.log"] and path.read_bytes() == b"abc"


def test_maxbytes_zero_never_rotates(tmp_path):
    path = tmp_path / "out.log"
    log = make(path, maxbytes=0, backups=5)
    for _ in range(100):
        log.write(b"x" * 100)
    assert os.listdir(tmp_path) == ["out.log"] and path.stat().st_size == 10000


def test_fifo_is_never_rotated(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        log = make(fifo, maxbytes=4, backups=2)
        log.write(b"hello ")
        log.write(b"world\n")
        log.close()
        assert os.read(reader, 100) == b"hello world\n"
    finally:
        os.close(reader)
    assert os.listdir(tmp_path) == ["pipe"]


def test_dev_stdout_is_never_rotated(capfd):
    log = make("/dev/stdout", maxbytes=4, backups=2)
    log.write(b"hello ")
    log.write(b"world\n")
    log.close()
    assert capfd.readouterr().out == "hello world\n"


def test_reopen_after_move(tmp_path):
    path = tmp_path / "out.log"
    log = make(path, maxbytes=100, backups=1)
    log.write(b"a" * 60)
    os.rename(path, tmp_path / "moved")
    log.reopen()
    log.write(b"b" * 60)  # new file counts from zero: no rotation yet
    log.close()
    assert (tmp_path / "moved").read_bytes() == b"a" * 60
    assert path.read_bytes() == b"b" * 60 and not os.path.exists(f"{path}.1")


def test_fd_and_account_for_external_writes(tmp_path):
    path = tmp_path / "out.log"
    log = make(path, maxbytes=10, backups=1)
    fd = log.fd
    log.account(os.write(fd, b"0123456789"))
    assert log.fd >= 0 and path.read_bytes() == b""
    assert open(f"{path}.1", "rb").read() == b"0123456789"
    log.close()
    assert log.fd == -1
    log.write(b"dropped")  # after close: a no-op, not an error
    assert make(None).fd == -1


def test_clear(tmp_path):
    path = tmp_path / "out.log"
    log = make(path, maxbytes=100, backups=1)
    log.write(b"x" * 90)
    log.clear()
    log.write(b"y" * 20)
    assert path.read_bytes() == b"y" * 20 and not os.path.exists(f"{path}.1")


def test_strip_ansi_in_log(tmp_path):
    path = tmp_path / "out.log"
    log = make(path, strip_ansi=True)
    log.write(b"\x1b[1;31mred\x1b[0m plain\x1b[2K\n")
    log.write(b"\x1b[31m")  # nothing left: nothing written
    assert path.read_bytes() == b"red plain\n"


@pytest.mark.parametrize(
    "data",
    [b"", b"plain", b"\x1b[0m", b"a\x1b[31mb\x1b[0mc", b"unterminated \x1b[31", b"\x1b[\x1b[m",
     b"\x1bnot csi", b"x\x1b[12;40Hy", b"\x1b[?25lhidden\x1b[?25h", b"\x1b[1;2;3;4ZKtail"],
)
def test_strip_ansi_matches_supervisord(data):
    assert strip_ansi(data) == stripEscapes(data)


def test_strip_ansi_matches_supervisord_exhaustively():
    alphabet = [b"\x1b", b"[", b"m", b"K", b"x", b"1"]
    for n in range(7):
        for parts in itertools.product(alphabet, repeat=n):
            data = b"".join(parts)
            assert strip_ansi(data) == stripEscapes(data), data


def test_debug_line():
    assert debug_line("cat", "stdout", b"hello\n") == "'cat' stdout output:\nhello\n"
    assert debug_line("it's", "stderr", b"x") == "\"it's\" stderr output:\nx"
    undecodable = debug_line("cat", "stderr", b"bad \xff\n")
    assert undecodable == "'cat' stderr output:\nUndecodable: b'bad \\xff\\n'"


def test_syslog_lines(tmp_path):
    sent: list[str] = []
    log = make(None, syslog_tag="web", syslog_fn=sent.append)
    log.write(b"one\ntwo\n\nfour\n")
    log.write(b"partial")
    log.write(b"\xffx\n")
    assert sent == ["web one", "web two", "web ", "web four", "web partial", "web \\xffx"]


def test_syslog_and_file(tmp_path):
    sent: list[str] = []
    log = make(tmp_path / "o.log", syslog_tag="web", syslog_fn=sent.append, strip_ansi=True)
    log.write(b"\x1b[32mok\x1b[0m\n")
    assert sent == ["web ok"] and (tmp_path / "o.log").read_bytes() == b"ok\n"


# --- readers ---------------------------------------------------------------------------

CONTENT = b"0123456789abcdefghij"


@pytest.fixture
def logfile(tmp_path):
    path = tmp_path / "r.log"
    path.write_bytes(CONTENT)
    return str(path)


@pytest.mark.parametrize(
    "offset, length, expected",
    [(0, 0, CONTENT), (5, 0, CONTENT[5:]), (0, 4, b"0123"), (18, 10, b"ij"),
     (100, 0, b""), (-4, 0, b"ghij"), (-100, 0, CONTENT)],
)
def test_read_log(logfile, offset, length, expected):
    assert read_log(logfile, offset, length) == expected


@pytest.mark.parametrize("offset, length", [(-4, 2), (0, -1), (-1, -1)])
def test_read_log_bad_arguments(logfile, offset, length):
    with pytest.raises(BadArguments) as info:
        read_log(logfile, offset, length)
    assert info.value.fault == "BAD_ARGUMENTS" and isinstance(info.value, ValueError)


def test_read_log_no_file_and_failed(tmp_path):
    for path in (None, str(tmp_path / "missing")):
        with pytest.raises(NoFile) as info:
            read_log(path, 0, 0)
        assert info.value.fault == "NO_FILE"
    with pytest.raises(Failed):
        read_log(str(tmp_path), 0, 0)  # a directory: exists but cannot be read


def test_read_log_matches_supervisord(logfile):
    for offset, length in itertools.product(range(-25, 26, 3), range(-2, 25, 3)):
        try:
            want = readFile(logfile, offset, length)
        except ValueError as exc:
            with pytest.raises(BadArguments):
                read_log(logfile, offset, length)
            assert exc.args[0] == "BAD_ARGUMENTS"
        else:
            assert read_log(logfile, offset, length) == want, (offset, length)


def test_tail_log(logfile):
    assert tail_log(logfile, 0, 100) == (CONTENT, 20, False)
    assert tail_log(logfile, 15, 5) == (b"fghij", 20, False)
    # supervisord's window is the last `length` bytes, even if that starts before offset
    assert tail_log(logfile, 15, 100) == (CONTENT, 20, False)
    assert tail_log(logfile, 18, 4) == (b"ghij", 20, False)
    assert tail_log(logfile, 0, 5) == (b"fghij", 20, True)  # grew past offset+length
    assert tail_log(logfile, 20, 10) == (b"", 20, False)  # caught up
    assert tail_log(logfile, 0, 0) == (b"", 20, True)


def test_tail_log_missing(tmp_path):
    assert tail_log(None, 5, 10) == (b"", 0, False)
    assert tail_log(str(tmp_path / "missing"), 5, 10) == (b"", 0, False)


def test_tail_log_matches_supervisord(logfile):
    for offset, length in itertools.product(range(-25, 30, 2), range(-3, 30, 2)):
        data, new_offset, overflow = tailFile(logfile, offset, length)
        got = tail_log(logfile, offset, length)
        assert got == (data.encode(), new_offset, overflow), (offset, length)
