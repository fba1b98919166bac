"""The HTTP routes of a real agent (/RPC2, /logtail, /mainlogtail, the web page and its actions, tail.html)
under generated requests written in pieces, some cut short: each is answered with a sane status within a bound
(or, cut short, closed), never a 500 or a traceback, and the daemon keeps serving; a client that stops
mid-request is let go within the (here shortened) timeouts."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import event, example, given, settings

from tests.fuzz.agent_strategies import RawRequest, raw_requests
from tests.integration.harness import Daemon
from tests.integration.web_helpers import Web, web_config
from tests.support import free_port, wait_for

# Seconds for an answer: the header and body timeouts below, with room for a loaded machine.
BOUND = 5.0
PROGRAMS = """
[fleetvisor]
state_dir=%(here)s/state
http_header_timeout=1
http_body_timeout=1
http_idle_timeout=1

[program:steady]
command=/bin/sh -c "echo hello; echo oops >&2; exec sleep 1000"
startsecs=0
stopwaitsecs=1

[program:other]
command=/bin/sleep 1000
startsecs=0
stopwaitsecs=1
autostart=false
"""
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r\n")
# 5xx a server may give for a request it does not support; any other 5xx is a server failure.
UNSUPPORTED = {501, 505}


@dataclass
class Agent:
    daemon: Daemon
    port: int
    web: Web


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[Agent]:
    port = free_port()
    config = web_config(tmp_path_factory.mktemp("fuzz-http"), port, PROGRAMS, auth=False)
    daemon = Daemon(config)
    web = Web(port, auth=None)
    try:
        wait_for(web.ready, 15, "the agent to serve")
        yield Agent(daemon, port, web)
        daemon.assert_no_failures()
    finally:
        daemon.stop()


def exchange(port: int, request: RawRequest, half_close: bool = True) -> bytes:
    """Write the request in its pieces (half-closing a cut one, unless told not to) and read until the answer's
    headers are in or the server closes; fails if neither happens within BOUND."""
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start, end in zip([0, *request.cuts], [*request.cuts, len(request.data)], strict=True):
            try:
                sock.sendall(request.data[start:end])
            except (BrokenPipeError, ConnectionResetError):
                break  # answered and closed before the rest was written (a 400 on the request line)
        if not request.complete and half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server has closed already
                pass
        deadline = time.monotonic() + BOUND
        received = b""
        while not _headers_done(received):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no answer within {BOUND}s to {request!r}; got {received!r}") from None
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
        return received


def _headers_done(received: bytes) -> bool:
    """A final (not 1xx) status line and its headers are in."""
    for head in received.split(b"\r\n\r\n")[:-1]:
        match = STATUS_LINE.match(head + b"\r\n")
        if match and not match.group(1).startswith(b"1"):
            return True
    return False


def final_status(received: bytes) -> int | None:
    statuses = [int(m.group(1)) for m in STATUS_LINE.finditer(received)]
    finals = [s for s in statuses if s >= 200]
    return finals[0] if finals else None


# A request costs a few milliseconds: twice the profile's examples (300 in ci).
@settings(max_examples=2 * settings.default.max_examples)
@given(request_=raw_requests())
@example(RawRequest(b"GET /logtail/steady HTTP/1.1\r\nHost: x\r\n\r\n", [4, 20], True))
@example(RawRequest(b"GET /logtail/steady#frag HTTP/1.0\r\n\r\n", [], True))  # was a 500: chunks in HTTP/1.0
@example(RawRequest(b"GET /index.html?processname=steady&action=restart HTTP/1.1\r\nHost: x\r\n\r\n", [], True))
@example(RawRequest(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n<met", [10], True))
@example(RawRequest(b"GET /tail.html?processname=steady&limit=-1", [3], False))
def test_any_request_gets_a_sane_answer(agent, request_):
    received = exchange(agent.port, request_)
    assert b"Traceback" not in received, received
    status = final_status(received)
    event(f"status {status}")
    if status is None:
        # Closed without an answer: only a request the client never finished may be.
        assert not request_.complete, (request_, received)
    else:
        assert 200 <= status < 500 or status in UNSUPPORTED, (request_, received)
    assert agent.daemon.proc.poll() is None, "the agent exited"
    assert agent.web.get("/ok.html", timeout=BOUND).status == 200


# Each waits out a timeout (1 s here): a fifteenth of the profile's examples (10 in ci).
@settings(max_examples=max(5, settings.default.max_examples // 15))
@given(request_=raw_requests(cut_short=True))
@example(RawRequest(b"", [], False))  # connects and says nothing
@example(RawRequest(b"GET /ok.html HTTP/1.1\r\nHost: x\r\n", [], False))
@example(RawRequest(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n<met", [], False))
def test_a_client_that_stops_mid_request_is_let_go(agent, request_):
    """A client that stops writing and keeps the connection open is answered or dropped once the header, body
    or idle timeout is over; it never holds a connection for ever."""
    received = exchange(agent.port, request_, half_close=False)
    status = final_status(received)
    event(f"status {status}")
    assert status is None or 200 <= status < 500, (request_, received)
    assert agent.daemon.proc.poll() is None, "the agent exited"
    assert agent.web.get("/ok.html", timeout=BOUND).status == 200
