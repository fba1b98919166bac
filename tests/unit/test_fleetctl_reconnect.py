"""fleetctl's reconnecting controller stream (cli/reconnect.py), the one `status --watch` and
`ops watch` share, against a stand-in for fleetctl's Controller object: streams that answer,
break, close early or refuse, played in turn. Backoff delays are recorded, not slept."""

from __future__ import annotations

import pytest
from rich.text import Text

from fleetvisor.cli import reconnect
from fleetvisor.cli.client import CommandError, NoController

BROKEN = CommandError("cannot reach controller ctl:1: Connection refused")


class Streams:
    """`stream()` plays the next script: its items are yielded, a CommandError in it is raised."""

    address = "ctl:1"

    def __init__(self, *scripts: list) -> None:
        self.scripts = list(scripts)
        self.opened = self.closed = 0

    def stream(self, method, request, *, timeout=None):
        self.opened += 1
        script = self.scripts.pop(0)

        def play():
            try:
                for item in script:
                    if isinstance(item, Exception):
                        raise item
                    yield item
            finally:
                self.closed += 1
        return play()


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr(reconnect.time, "sleep", delays.append)
    return delays


def watch(streams: Streams, notes: list, **kwargs):
    return reconnect.reconnecting(streams, "Watch", None, what="status stream", hint="Ctrl-C to stop",
                                  note=lambda text: notes.append(text.plain if isinstance(text, Text) else text),
                                  **kwargs)


def test_a_stream_that_drops_is_reopened_and_the_outage_told_once(slept):
    streams = Streams([1, 2, BROKEN], [BROKEN], [BROKEN], [3], [4, "end"])
    notes: list = []
    got = []
    for message in watch(streams, notes, done=lambda m: m == "end"):
        got.append(message)
        if message == 3:
            assert notes == ["cannot reach controller ctl:1: Connection refused; reconnecting (Ctrl-C to stop)",
                             None]  # live again: the note is withdrawn
    assert got == [1, 2, 3, 4, "end"]
    assert slept == [0.5, 1.0, 2.0, 0.5]  # doubling while down, from the start again after an answer
    assert notes[2:] == ["controller ctl:1 ended the status stream; reconnecting (Ctrl-C to stop)", None]
    assert streams.opened == streams.closed == 5


def test_the_backoff_is_capped(slept):
    streams = Streams([1], *([[BROKEN]] * 7), ["end"])
    notes: list = []
    assert list(watch(streams, notes, done=lambda m: m == "end")) == [1, "end"]
    assert slept == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert len([n for n in notes if n]) == 1


@pytest.mark.parametrize("script, message", [
    ([BROKEN], "cannot reach controller ctl:1: Connection refused"),
    ([], "controller ctl:1 ended the status stream"),
])
def test_a_stream_that_never_answered_fails_at_once(slept, script, message):
    notes: list = []
    with pytest.raises(CommandError) as info:
        list(watch(Streams(script), notes))
    assert str(info.value) == message and not slept and not notes


def test_a_fatal_refusal_ends_the_watch_even_after_answers(slept):
    gone = CommandError("no such operation: op-1", 4)
    notes: list = []
    with pytest.raises(CommandError) as info:
        list(watch(Streams([1, BROKEN], [gone]), notes, fatal=(2, 4)))
    assert info.value is gone and slept == [0.5]


def test_no_controller_answering_is_not_fatal_though_its_exit_status_is_4(slept):
    """An operation that is gone ends `ops watch` (4); every controller being down (also 4) does not."""
    down = NoController("no controller answered (2 tried): cannot reach controller ctl:1: Connection refused; "
                        "cannot reach controller ctl:2: Connection refused", 4)
    notes: list = []
    got = list(watch(Streams([1, BROKEN], [down], [down], [2, "end"]), notes, done=lambda m: m == "end",
                     fatal=(2, 4)))
    assert got == [1, 2, "end"] and slept == [0.5, 1.0, 2.0]
    assert notes[0].startswith("cannot reach controller ctl:1") and notes[1:] == [None]


def test_done_ends_without_reopening(slept):
    streams = Streams(["a", "end", "never read"])
    assert list(watch(streams, [], done=lambda m: m == "end")) == ["a", "end"]
    assert streams.opened == streams.closed == 1 and not slept


def test_stopping_the_watch_closes_the_stream(slept):
    streams = Streams([1, 2, 3])
    messages = watch(streams, [])
    assert next(messages) == 1
    messages.close()  # what Ctrl-C out of the caller's loop does
    assert streams.opened == streams.closed == 1
