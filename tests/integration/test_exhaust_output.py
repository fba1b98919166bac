"""A child that writes hundreds of megabytes with no newline: the agent's memory stays bounded
(in the plain path and in capture mode, also inside a capture that never ends), the log
rotates at logfile_maxbytes, and the log readers keep answering meanwhile."""

from __future__ import annotations

import http.client
import sys
import xmlrpc.client
from pathlib import Path

import pytest

from tests.support import free_port

from .exhaustion import LatencyProbe, probed_config

MEGABYTES = 305  # not a multiple of the 10 MB rotation size: the current file is not empty
MAXBYTES = 10 * 1024 * 1024
# The agent's peak resident memory may grow by this much while the output passes through.
RSS_GROWTH_BOUND = 64 * 1024 * 1024
WRITER = Path(__file__).parent / "programs" / "no_newline.py"


def stream_some(name: str, port: int) -> bytes:
    """The first bytes of `supervisorctl tail -f`'s stream (/logtail)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/logtail/{name}")
        response = conn.getresponse()
        assert response.status == 200
        return response.read1(4096)
    finally:
        conn.close()


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("mode,options,args", [
    ("plain", "", ""),
    ("capture", "stdout_capture_maxbytes=1MB\nstdout_events_enabled=true", ""),
    ("unended capture", "stdout_capture_maxbytes=1MB", " --begin-token"),
], ids=["plain", "capture", "unended-capture"])
def test_gigantic_line_keeps_memory_bounded_and_logs_rotating(tmp_path, daemons, mode, options, args):
    port = free_port()
    log = tmp_path / "writer.log"
    conf = probed_config(tmp_path, port, f"""
        [program:writer]
        command={sys.executable} {WRITER} {MEGABYTES}{args}
        autostart=false
        autorestart=false
        startsecs=0
        stdout_logfile={log}
        stdout_logfile_maxbytes={MAXBYTES}
        stdout_logfile_backups=2
        """, options + "\n")
    d = daemons(conf)
    rpc = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/RPC2")
    with LatencyProbe(port) as probe:
        before = peak_rss(d.proc.pid)
        assert rpc.supervisor.startProcess("writer") is True
        # The log readers answer while the output flows.
        data, offset, overflow = rpc.supervisor.tailProcessStdoutLog("writer", 0, 1000)
        assert len(data) <= 1000 and offset >= 0
        assert len(rpc.supervisor.readProcessStdoutLog("writer", -1000, 0)) <= 1000
        if mode != "unended capture":  # (nothing reaches that log to stream)
            assert set(stream_some("writer", port)) == {ord("x")}
        d.wait_line(r"exited: writer \(exit status 0; expected\)", timeout=120)
        grown = peak_rss(d.proc.pid) - before
    probe.assert_bounded()
    assert grown < RSS_GROWTH_BOUND, f"the agent's peak RSS grew by {grown >> 20} MB ({mode})"
    if mode == "unended capture":  # captured output never reaches the log
        assert log.stat().st_size == 0 and not log.with_name("writer.log.1").exists()
        return
    files = [log, log.with_name("writer.log.1"), log.with_name("writer.log.2")]
    assert [f.stat().st_size for f in files] == [MEGABYTES % 10 * 1024 * 1024, MAXBYTES, MAXBYTES]
    assert not log.with_name("writer.log.3").exists()
    tail, _, _ = rpc.supervisor.tailProcessStdoutLog("writer", 0, 100)
    assert tail == "x" * 100
