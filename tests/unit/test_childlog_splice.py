"""The splice path of a child log: real pipes and files, bytes moved by the kernel.

Rotation must come out as with `write` (at exactly maxbytes here, as each splice is capped);
files splice cannot reach fall back to `write` (the caller reads); O_APPEND's promises hold.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import threading
import time

import pytest

from fleetvisor.agent.childlog import ChildLog

CHUNK = 1 << 16


def make(path, maxbytes=0, backups=0, **kw) -> ChildLog:
    return ChildLog(str(path) if path else None, maxbytes=maxbytes, backups=backups, **kw)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def splice_all(log: ChildLog, r: int, count: int = CHUNK) -> list[int]:
    """Splice until the pipe is empty (or at EOF); the sizes of the moves."""
    moves = []
    while True:
        try:
            moved = log.splice_from(r, count)
        except BlockingIOError:
            return moves
        assert moved is not None
        moves.append(moved)
        if moved == 0:
            return moves


def test_moves_bytes_empty_then_eof(tmp_path, pipe):
    r, w = pipe
    path = tmp_path / "out.log"
    path.write_bytes(b"old\n")
    log = make(path)
    os.write(w, b"binary \x00\xff\n")
    assert log.splice_from(r, CHUNK) == 10
    with pytest.raises(BlockingIOError):
        log.splice_from(r, CHUNK)
    os.write(w, b"more")
    os.close(w)
    assert log.splice_from(r, CHUNK) == 4
    assert log.splice_from(r, CHUNK) == 0  # EOF
    log.close()
    assert path.read_bytes() == b"old\nbinary \x00\xff\nmore"


def test_rotates_at_exact_boundaries(tmp_path, pipe):
    r, w = pipe
    path = tmp_path / "out.log"
    log = make(path, maxbytes=10, backups=3)
    os.write(w, bytes(range(65, 65 + 35)))  # 'A'...: 3 full files and 5 bytes
    assert splice_all(log, r) == [10, 10, 10, 5]
    log.close()
    assert open(f"{path}.3", "rb").read() == b"ABCDEFGHIJ"
    assert open(f"{path}.2", "rb").read() == b"KLMNOPQRST"
    assert open(f"{path}.1", "rb").read() == b"UVWXYZ[\\]^"
    assert path.read_bytes() == b"_`abc"


def test_rotation_counts_existing_size_and_mixes_with_write(tmp_path, pipe):
    r, w = pipe
    path = tmp_path / "out.log"
    path.write_bytes(b"12345678")
    log = make(path, maxbytes=10, backups=1)
    os.write(w, b"9" * 5)
    assert log.splice_from(r, CHUNK) == 2  # only up to maxbytes
    assert open(f"{path}.1", "rb").read() == b"1234567899" and path.read_bytes() == b""
    assert log.splice_from(r, CHUNK) == 3
    log.write(b"wwwwwww")  # the write path counts on: 3 + 7 = 10, rotates
    assert open(f"{path}.1", "rb").read() == b"999wwwwwww" and path.read_bytes() == b""


def test_file_already_past_maxbytes_rotates_after_one_move(tmp_path, pipe):
    # maxbytes lowered below an existing file's size: like write, move one chunk then rotate
    r, w = pipe
    path = tmp_path / "out.log"
    path.write_bytes(b"x" * 20)
    log = make(path, maxbytes=10, backups=1)
    os.write(w, b"abc")
    assert log.splice_from(r, CHUNK) == 3
    assert open(f"{path}.1", "rb").read() == b"x" * 20 + b"abc" and path.read_bytes() == b""


def test_maxbytes_zero_never_rotates(tmp_path, pipe):
    r, w = pipe
    path = tmp_path / "out.log"
    log = make(path, maxbytes=0, backups=3)
    data = os.urandom(50_000)
    os.write(w, data)
    assert sum(splice_all(log, r, count=7000)) == len(data)
    assert path.read_bytes() == data and os.listdir(tmp_path) == ["out.log"]


def test_large_stream_through_rotation_is_intact(tmp_path):
    # a writer thread keeps the pipe full; the concatenated files are the stream, byte for byte
    r, w = os.pipe()
    os.set_blocking(r, False)
    stream = random.Random(4).randbytes(3_000_000)
    writer = threading.Thread(target=lambda: (os.write(w, stream), os.close(w)))
    path = tmp_path / "out.log"
    log = make(path, maxbytes=100_000, backups=40)
    writer.start()
    try:
        while True:
            try:
                if log.splice_from(r, CHUNK) == 0:
                    break
            except BlockingIOError:
                time.sleep(0.001)  # the writer thread refills the pipe
    finally:
        writer.join()
        os.close(r)
    log.close()
    files = [f"{path}.{i}" for i in range(30, 0, -1)] + [str(path)]
    assert all(os.path.getsize(f) == 100_000 for f in files[:-1])  # rotated at exactly maxbytes
    joined = b"".join(open(f, "rb").read() for f in files)
    assert hashlib.sha256(joined).digest() == hashlib.sha256(stream).digest()


def test_write_after_splice_appends_again(tmp_path, pipe):
    # splice needs O_APPEND off; write turns it back on, and both land at the end
    r, w = pipe
    path = tmp_path / "out.log"
    log = make(path)
    os.write(w, b"a")
    log.splice_from(r, CHUNK)
    assert not fcntl.fcntl(log.fd, fcntl.F_GETFL) & os.O_APPEND
    log.write(b"b")
    assert fcntl.fcntl(log.fd, fcntl.F_GETFL) & os.O_APPEND
    os.write(w, b"c")
    log.splice_from(r, CHUNK)
    assert path.read_bytes() == b"abc"


def test_copytruncate_goes_on_at_the_new_end(tmp_path, pipe):
    r, w = pipe
    path = tmp_path / "out.log"
    log = make(path)
    os.write(w, b"x" * 1000)
    splice_all(log, r)
    os.truncate(path, 0)  # logrotate copytruncate
    os.write(w, b"after")
    splice_all(log, r)
    assert path.read_bytes() == b"after"  # not a 1000-byte hole first


def test_two_logs_sharing_a_path_do_not_overwrite(tmp_path, pipe):
    # stdout and stderr of a program sent to one file: each move goes to the end
    r, w = pipe
    path = tmp_path / "both.log"
    out, err = make(path), make(path)
    os.write(w, b"out1 ")
    splice_all(out, r)
    err.write(b"err1 ")
    os.write(w, b"out2 ")
    splice_all(out, r)
    os.write(w, b"err2")
    splice_all(err, r)
    assert path.read_bytes() == b"out1 err1 out2 err2"


def test_reopen_and_clear(tmp_path, pipe):
    r, w = pipe
    path = tmp_path / "out.log"
    log = make(path, maxbytes=100, backups=1)
    os.write(w, b"a" * 60)
    splice_all(log, r)
    os.rename(path, tmp_path / "moved")
    log.reopen()  # SIGUSR2: a fresh file counting from zero
    os.write(w, b"b" * 60)
    splice_all(log, r)
    assert (tmp_path / "moved").read_bytes() == b"a" * 60
    assert path.read_bytes() == b"b" * 60 and not os.path.exists(f"{path}.1")
    log.clear()  # clearProcessLogs
    os.write(w, b"c" * 30)
    splice_all(log, r)
    assert path.read_bytes() == b"c" * 30


@pytest.mark.parametrize("kind", ["none", "dev_null", "fifo", "strip_ansi", "syslog", "closed"])
def test_logs_splice_cannot_serve_leave_the_bytes_in_the_pipe(tmp_path, pipe, kind):
    r, w = pipe
    reader = -1
    if kind == "none":
        log = make(None)
    elif kind == "dev_null":
        log = make("/dev/null")
    elif kind == "fifo":
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        log = make(fifo)
    elif kind == "strip_ansi":
        log = make(tmp_path / "o.log", strip_ansi=True)
    elif kind == "syslog":
        log = make(tmp_path / "o.log", syslog_tag="x", syslog_fn=lambda _: None)
    else:
        log = make(tmp_path / "o.log")
        log.close()
    os.write(w, b"for the read path")
    assert log.splice_from(r, CHUNK) is None
    assert os.read(r, 100) == b"for the read path"
    log.close()
    if reader >= 0:
        os.close(reader)


def test_unsupported_file_falls_back_for_good():
    # /proc files are regular but have no splice_write: EINVAL. A thread's own comm file, so
    # what the write path then writes only renames a thread that is about to end.
    result = {}

    def run():
        r, w = os.pipe()
        os.set_blocking(r, False)
        log = make("/proc/thread-self/comm")
        os.write(w, b"probe")
        result["first"] = log.splice_from(r, CHUNK)
        result["again"] = log.splice_from(r, CHUNK)
        result["left"] = os.read(r, 100)
        log.close()
        os.close(r)
        os.close(w)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert result == {"first": None, "again": None, "left": b"probe"}


def test_unsupported_is_permanent_but_write_errors_are_not(tmp_path, pipe, monkeypatch):
    r, w = pipe
    real_splice, calls, fail = os.splice, [], []

    def splice(*args, **kwargs):
        calls.append(args)
        if fail:
            raise OSError(fail.pop(), "simulated")
        return real_splice(*args, **kwargs)
    monkeypatch.setattr(os, "splice", splice)
    os.write(w, b"data")

    transient = make(tmp_path / "full.log")
    fail.append(errno.ENOSPC)  # disk full: read and write this time (write reports it)
    assert transient.splice_from(r, CHUNK) is None
    assert transient.splice_from(r, CHUNK) == 4 and len(calls) == 2

    os.write(w, b"data")
    unsupported = make(tmp_path / "odd.log")
    fail.append(errno.EINVAL)
    assert unsupported.splice_from(r, CHUNK) is None
    assert unsupported.splice_from(r, CHUNK) is None and len(calls) == 3  # not tried again
    unsupported.reopen()
    assert unsupported.splice_from(r, CHUNK) is None and len(calls) == 3
