"""What the resource exhaustion tests share: a probe that keeps asking a daemon for its state
and remembers how long the answers took, and the daemon's CPU time and memory."""

from __future__ import annotations

import http.client
import textwrap
import threading
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.daemons import usage
from tests.support import wait_for

from .harness import write_config

# The daemon must answer within this while it is under pressure (the design target is
# 100 ms, measured in benchmarks/; this bound holds on a loaded 2-core machine too).
ANSWER_BOUND = 1.0
MIN_ANSWERS = 5
GET_STATE = xmlrpc.client.dumps((), "supervisor.getState").encode()


LOGS_HERE = "logfile=%(here)s/main.log\nchildlogdir=%(here)s\n"


def probed_config(directory: Path, port: int, *sections: str, supervisord: str = LOGS_HERE) -> Path:
    """A config whose inet HTTP server on `port` the probe asks, with `supervisord` options
    (where the logs go) and `sections` (each dedented on its own)."""
    head = (f"[supervisord]\npidfile=%(here)s/supervisord.pid\n{supervisord}\n"
            f"[inet_http_server]\nport=127.0.0.1:{port}\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n")
    return write_config(directory, head + "\n".join(textwrap.dedent(section) for section in sections))


def get_state(port: int, timeout: float = 10.0) -> str:
    """supervisor.getState over the inet HTTP server, with a deadline (ServerProxy has none)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/RPC2", GET_STATE, {"Content-Type": "text/xml"})
        reply = conn.getresponse().read()
    finally:
        conn.close()
    (state,), _ = xmlrpc.client.loads(reply)
    return state["statename"]


@dataclass
class LatencyProbe:
    """Asks getState every `interval` seconds in a thread until stopped."""

    port: int
    interval: float = 0.05
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LatencyProbe:
        wait_for(lambda: _answers(self.port), 20, "the daemon's first answer")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # A few answers at least, however quick the case was.
        wait_for(lambda: len(self.latencies) + len(self.errors) >= MIN_ANSWERS, 20, "the probe's answers")
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                get_state(self.port)
            except (OSError, xmlrpc.client.Error, ValueError) as err:
                self.errors.append(repr(err))
            else:
                self.latencies.append(time.monotonic() - began)
            self._stop.wait(self.interval)

    def assert_bounded(self) -> None:
        assert not self.errors, f"getState failed under load: {self.errors[:3]}"
        assert len(self.latencies) >= MIN_ANSWERS, f"only {len(self.latencies)} answers"
        worst = max(self.latencies)
        assert worst < ANSWER_BOUND, f"getState took {worst:.3f}s (bound {ANSWER_BOUND}s)"


def _answers(port: int) -> bool:
    try:
        get_state(port, timeout=2)
    except OSError:
        return False
    return True


def cpu_seconds(pid: int) -> float:
    return usage(pid).cpu_seconds


def rss_bytes(pid: int) -> int:
    return usage(pid).rss_bytes
