"""Shared pieces of the event tests: the recording listener and reading what it recorded."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

from tests.support import wait_for

from .harness import write_config

RECORDER = Path(__file__).parent / "listeners" / "recorder.py"

HEADER = """
[supervisord]
logfile=%(here)s/main.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s
loglevel=info
"""


def recorder(out: Path, *options: str) -> str:
    """The command= of a recording listener."""
    return " ".join([sys.executable, str(RECORDER), str(out), *options])


def conf(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    return write_config(tmp_path, header + textwrap.dedent(body))


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def wait_records(path: Path, condition, timeout: float = 10.0, what: str = "records") -> list[dict]:
    """Wait until `condition(records)` holds; returns the records then."""
    def check():
        got = records(path)
        return got if condition(got) else None
    try:
        return wait_for(check, timeout, what)  # type: ignore[return-value]
    except AssertionError:
        raise AssertionError(f"timed out waiting for {what}; recorded:\n" +
                             "\n".join(json.dumps(r) for r in records(path))) from None


def named(name: str):
    return lambda recs: [r for r in recs if r["headers"]["eventname"] == name]


def has(name: str, count: int = 1):
    return lambda recs: len(named(name)(recs)) >= count


def mask_pids(text: str) -> str:
    return re.sub(r"pid:\d+", "pid:N", text)
