"""Children's output in capture mode: the splitter (`CaptureScanner`) must give the same log bytes and the same
captured messages however the pipe reads cut the stream, equal to a reference computed on the whole stream; and so
must a running agent reading a real child that writes the stream in pieces."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetvisor.agent.events import BEGIN_TOKEN, END_TOKEN, CaptureScanner
from tests.fuzz.agent_strategies import OUTPUT_PIECES, chunkings, output_streams
from tests.integration.ctlharness import Server, serving
from tests.integration.events_helpers import RECORDER, recorder, records
from tests.support import wait_for


def reference(stream: bytes, maxbytes: int) -> tuple[bytes, list[bytes], bytes]:
    """(log bytes, messages, captured bytes) of the whole stream: text between BEGIN and END is a message (its last
    `maxbytes` bytes), tokens vanish, an unterminated message is captured but never sent."""
    log, messages, captured = b"", [], b""
    capturing, pos = False, 0
    while True:
        token = END_TOKEN if capturing else BEGIN_TOKEN
        at = stream.find(token, pos)
        piece = stream[pos:] if at < 0 else stream[pos:at]
        if capturing:
            captured += piece
        else:
            log += piece
        if at < 0:
            return log, messages, captured
        if capturing:
            messages.append(piece[-maxbytes:])
        capturing, pos = not capturing, at + len(token)


def scan(chunks: list[bytes], maxbytes: int) -> list[tuple[str, bytes]]:
    """What the scanner says for the chunks, with neighbouring pieces of one kind merged (where a read ended is
    not part of the result)."""
    scanner = CaptureScanner(maxbytes)
    merged: list[tuple[str, bytes]] = []
    for kind, data in [p for chunk in chunks for p in scanner.feed(chunk)] + scanner.flush():
        if merged and kind != "message" and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + data)
        else:
            merged.append((kind, data))
    return merged


@st.composite
def streams_and_chunkings(draw: st.DrawFn) -> tuple[bytes, list[bytes], int]:
    stream = draw(output_streams)
    return stream, draw(chunkings(stream)), draw(st.integers(1, 40))


BYTEWISE = BEGIN_TOKEN + b"<!--XSUPERVISOR:END" + END_TOKEN + b"<!--XSUPERVISOR:BEGIN"


@given(streams_and_chunkings())
@example((b"<!--X" + BEGIN_TOKEN + b"m" + END_TOKEN, [b"<!--X", BEGIN_TOKEN, b"m" + END_TOKEN], 5))
@example((BYTEWISE, [BYTEWISE[i:i + 1] for i in range(len(BYTEWISE))], 3))
def test_chunking_changes_nothing(case):
    stream, chunks, maxbytes = case
    assert b"".join(chunks) == stream
    pieces = scan(chunks, maxbytes)
    assert pieces == scan([stream], maxbytes)
    log, messages, captured = reference(stream, maxbytes)
    assert b"".join(d for k, d in pieces if k == "output") == log
    assert [d for k, d in pieces if k == "message"] == messages
    assert b"".join(d for k, d in pieces if k == "captured") == captured


@given(streams_and_chunkings())
def test_bytes_are_decided_once_the_stream_ends(case):
    """Nothing is held back after flush, and nothing is reported twice: the log and the captured text together
    are the stream without its tokens."""
    stream, chunks, maxbytes = case
    pieces = scan(chunks, maxbytes)
    kept = b"".join(d for k, d in pieces if k != "message")
    log, _, captured = reference(stream, maxbytes)
    assert len(kept) == len(log) + len(captured)


# -- through a running agent ------------------------------------------------------------------------------------

PROGRAMS = """
[program:writer]
command={python} {scripted} %(here)s/script.json %(here)s/done
stdout_logfile=%(here)s/writer.log
stdout_logfile_maxbytes=0
stdout_capture_maxbytes={maxbytes}
autostart=false
autorestart=false
startsecs=0

[eventlistener:recorder]
command={recorder}
events=PROCESS_COMMUNICATION_STDOUT
buffer_size=1000
startsecs=0
"""
MAXBYTES = 16


@dataclass
class Agent:
    server: Server
    dir: Path


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[Agent]:
    directory = tmp_path_factory.mktemp("fuzz-output")
    programs = textwrap.dedent(PROGRAMS).format(
        python=sys.executable, scripted=RECORDER.parent / "scripted.py", maxbytes=MAXBYTES,
        recorder=recorder(directory / "recorded.jsonl"))
    with serving(directory, programs) as server:
        server.wait_state("recorder", "RUNNING")
        yield Agent(server, directory)


# A child's output as text (the recording listener reads events as UTF-8): tokens, their pieces and lines.
TEXT_PIECES = [p for p in OUTPUT_PIECES if p.isascii() and b"\x1b" not in p and b"\x00" not in p]
text_streams = st.lists(st.one_of(st.sampled_from(TEXT_PIECES), st.text("ab \n<>!-", max_size=8).map(str.encode)),
                        max_size=10).map(b"".join)


@st.composite
def text_writes(draw: st.DrawFn) -> list[bytes]:
    return [chunk for chunk in draw(chunkings(draw(text_streams))) if chunk]


def messages_of(directory: Path) -> list[bytes]:
    """The captured messages the recorder got: a PROCESS_COMMUNICATION payload is a header line, then the data."""
    return [r["payload"].split("\n", 1)[1].encode() for r in records(directory / "recorded.jsonl")]


# A child process per example, about 50 ms: half the profile's examples (75 in ci).
@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(text_writes())
@example([b"a<!--XSUPERVISOR:", b"BEGIN-->hello<!--XSUPER", b"VISOR:END-->b"])
@example([b"<!--XSUPERVISOR:BEGIN-->never ends"])
def test_a_child_writing_in_pieces(agent, writes):
    """The log file and the PROCESS_COMMUNICATION events of a real child equal the whole-stream reference,
    however its writes were cut (and however the agent's reads cut them again)."""
    server, directory = agent.server, agent.dir
    rpc = server.rpc().supervisor
    stream = b"".join(writes)
    log, messages, _ = reference(stream, MAXBYTES)
    (directory / "script.json").write_text(json.dumps([{"write": chunk.hex()} for chunk in writes]))
    (directory / "done").unlink(missing_ok=True)
    logfile = directory / "writer.log"
    log_before = logfile.stat().st_size if logfile.exists() else 0
    messages_before = len(messages_of(directory))
    assert rpc.startProcess("writer") is True
    wait_for(lambda: (directory / "done").exists(), 15, "the child to write everything")
    assert rpc.stopProcess("writer") is True  # its pipe closes: a token piece held back is output after all
    wait_for(lambda: logfile.stat().st_size >= log_before + len(log), 10, "the log to have the output")
    wait_for(lambda: len(messages_of(directory)) >= messages_before + len(messages), 10, "the messages")
    assert logfile.read_bytes()[log_before:] == log
    assert messages_of(directory)[messages_before:] == messages
