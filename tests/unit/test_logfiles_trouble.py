"""A log whose writes fail (a full disk, a file size limit, its directory gone) drops what it
cannot write, says so once and once again when writing works, and never stays closed."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import shutil
import signal
from collections.abc import Iterator

import pytest

from fleetvisor.agent import logfiles
from fleetvisor.agent.http.accepts import ACCEPT_FAILED, AcceptTrouble
from fleetvisor.agent.logfiles import RotatingFile
from fleetvisor.agent.mainlog import Level, MainLog


@pytest.fixture
def heard():
    said: list[tuple[bool, str]] = []
    yield said
    logfiles._FAILING.clear()  # a test that ends while failing must not leak into the next


def test_a_full_device_is_said_once_with_what_was_dropped(heard):
    log = RotatingFile("/dev/full", maxbytes=0, backups=0, notify=lambda *a: heard.append(a))
    for _ in range(100):
        log.write(b"x" * 10)
    log.close()
    assert heard == [(True, "cannot write log /dev/full: No space left on device; its output is dropped "
                            "until writes succeed again")]


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """Writes past `size` bytes fail with EFBIG meanwhile: a disk that fills, then empties."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG rather than death
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, old[1]))
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, previous)


def test_writing_again_is_said_once_with_the_bytes_dropped(tmp_path, heard):
    path = tmp_path / "out.log"
    log = RotatingFile(str(path), maxbytes=0, backups=0, notify=lambda *a: heard.append(a))
    log.write(b"12345")
    with file_size_limit(8):
        log.write(b"abc")
        log.write(b"def")  # dropped
        log.write(b"ghi")  # dropped
    log.write(b"back")
    log.write(b"more")
    log.close()
    assert path.read_bytes() == b"12345abcbackmore"
    assert [trouble for trouble, _ in heard] == [True, False]
    assert heard[1][1] == f"log {path} is written again (6 bytes were dropped)"


def test_a_rotation_that_cannot_open_its_file_is_retried(tmp_path, heard, monkeypatch):
    monkeypatch.setattr(logfiles, "REOPEN_RETRY", 0.0)
    folder = tmp_path / "logs"
    folder.mkdir()
    log = RotatingFile(str(folder / "out.log"), maxbytes=10, backups=1, notify=lambda *a: heard.append(a))
    shutil.rmtree(folder)
    log.write(b"0123456789")  # reaches maxbytes: the rotation finds no folder
    assert log.fd == -1 and heard[0][0] is True
    log.write(b"lost")  # still no folder: dropped
    folder.mkdir()
    log.write(b"kept")
    log.close()
    assert (folder / "out.log").read_bytes() == b"kept"
    assert heard[1] == (False, f"log {folder / 'out.log'} is written again (4 bytes were dropped)")


def test_the_main_log_failing_says_so_on_stderr_and_then_in_itself(tmp_path, capsys, heard):
    path = tmp_path / "main.log"
    log = MainLog(str(path), maxbytes=0, backups=0, level=Level.INFO)
    log.info("first")
    with file_size_limit(path.stat().st_size):
        log.info("dropped one")
        log.info("dropped two")
    log.info("last")
    log.close()
    messages = [line.split(" ", 2)[2] for line in path.read_text().splitlines()]
    assert messages[0] == "INFO first" and messages[1] == "INFO last"
    assert re.fullmatch(rf"INFO log {re.escape(str(path))} is written again \(\d+ bytes were dropped\)", messages[2])
    assert len(messages) == 3
    assert capsys.readouterr().err.count("cannot write log") == 1


def test_accept_failures_are_said_once_a_minute_per_socket():
    said: list[str] = []
    now = [0.0]
    log = MainLog(None, maxbytes=0, backups=0, level=Level.INFO)
    log.log = lambda level, msg: said.append(msg)  # type: ignore[method-assign]
    trouble = AcceptTrouble(log, clock=lambda: now[0])
    passed: list[dict] = []
    loop = asyncio.new_event_loop()
    try:
        loop.set_exception_handler(lambda _loop, context: passed.append(context))
        trouble.install(loop)

        class Sock:
            def getsockname(self):
                return ("127.0.0.1", 9001)
        context = {"message": ACCEPT_FAILED, "exception": OSError(24, "Too many open files"), "socket": Sock()}
        for second in range(120):
            now[0] = float(second)
            loop.call_exception_handler(context)
        loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    assert said == ["cannot accept connections on 127.0.0.1:9001: [Errno 24] Too many open files; "
                    "retrying every second (said once a minute while it lasts)"] * 2
    assert passed == [{"message": "something else"}]
