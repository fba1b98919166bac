"""Children's output in capture mode: the splitter (`CaptureScanner`) must give the same log bytes and the same
captured messages however the pipe reads cut the stream, equal to a reference computed on the whole stream."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from fleetvisor.agent.events import BEGIN_TOKEN, END_TOKEN, CaptureScanner
from tests.fuzz.agent_strategies import chunkings, output_streams


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
