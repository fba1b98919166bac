"""How fleetctl shows things: rich views for people, JSON for programs.

Every command answers through `show`: the same value as JSON with `-o json`, or the view built
for people. A view on a terminal fits the window; anywhere else (a pipe, a file) it is laid out
at its natural width, so `fleetctl audit | grep ...` sees every value whole, one row per line,
rather than cells folded to fit an 80-column guess.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from fleetvisor.v1 import agent_pb2 as pb

__all__ = ["FAULT_TEXT", "STATE_STYLE", "as_dict", "command_results", "err", "escape", "fault_text", "jsonable",
           "out", "print_json", "print_json_line", "print_view", "process_table", "show", "state_text", "write_log"]

STATE_STYLE = {
    "RUNNING": "green", "STARTING": "cyan", "STOPPING": "yellow", "BACKOFF": "bold yellow",
    "STOPPED": "dim", "EXITED": "yellow", "FATAL": "bold red", "UNKNOWN": "bold red",
}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def jsonable(value: object) -> object:
    """Protobuf messages as their dicts, also inside lists and dicts; everything else as is."""
    if isinstance(value, Message):
        return as_dict(value)
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return [jsonable(item) for item in value]
    return value


def print_json(value: object) -> None:
    json.dump(jsonable(value), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def print_json_line(value: object) -> None:
    """One compact JSON object per line, flushed, for streams a program reads as they come."""
    sys.stdout.write(json.dumps(jsonable(value), sort_keys=True) + "\n")
    sys.stdout.flush()


# Wide enough for any row: off a terminal a view is measured against this, not against the window.
UNBOUNDED = 1 << 20


def print_view(view: RenderableType) -> None:
    """A view for people: fitted to a terminal; elsewhere at its natural width, every cell whole
    and one row per line, without the padding rich leaves at line ends."""
    if out.is_terminal:
        out.print(view)
        return
    width = Measurement.get(out, out.options.update_width(UNBOUNDED), view).maximum
    wide = Console(width=max(width, 1), highlight=False, soft_wrap=True)
    with wide.capture() as captured:
        wide.print(view)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def note_line(note: Text | None) -> None:
    """A passing problem (a watch reconnecting) as one line on stderr; None (it passed) says nothing."""
    if note is not None:
        err.print(note)


def show(as_json: bool, value: object, human: Callable[[], RenderableType | None]) -> None:
    """A command's answer: `value` as JSON, or the view `human` builds. `human` returns None when
    it wrote its own output (text that must reach stdout byte for byte, such as a config)."""
    if as_json:
        print_json(value)
        return
    view = human()
    if view is not None:
        print_view(view)


def write_log(chunks: Iterable[pb.LogChunk], as_json: bool = False) -> None:
    """LogChunks to stdout as they come: raw bytes, or one JSON object per chunk for programs."""
    if as_json:
        for chunk in chunks:
            if not chunk.data and not chunk.truncated:
                continue  # a followed stream says where it starts before it has anything to say
            print_json_line({"data": chunk.data.decode("utf-8", "replace"), "offset": chunk.offset,
                             "truncated": chunk.truncated})
        return
    stream = sys.stdout.buffer
    for chunk in chunks:
        stream.write(chunk.data)
        stream.flush()


def state_text(statename: str) -> str:
    style = STATE_STYLE.get(statename, "")
    return f"[{style}]{statename}[/]" if style else statename


HEALTH_TEXT = {pb.HEALTHY: ("healthy", "green"), pb.UNHEALTHY: ("unhealthy", "bold red"),
               pb.HEALTH_UNKNOWN: ("unknown", "dim")}


def has_health(processes: Iterable[pb.ProcessInfo]) -> bool:
    """Whether a HEALTH column is worth showing: some process has a health check."""
    return any(p.health != pb.HEALTH_UNSPECIFIED for p in processes)


def health_cell(p: pb.ProcessInfo) -> Text:
    """A process's health, with the failure that made it unhealthy; empty without a check."""
    word, style = HEALTH_TEXT.get(p.health, ("", ""))
    text = Text(word, style=style)
    if p.health == pb.UNHEALTHY and p.health_message:
        text.append(f" ({p.health_message})", style="dim")
    return text


def process_table(node: str, processes: Iterable[pb.ProcessInfo]) -> Table:
    processes = list(processes)
    health = has_health(processes)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NODE", "NAME", "STATE", "PID", *(("HEALTH",) if health else ()), "DESCRIPTION"):
        table.add_column(column, no_wrap=column not in ("DESCRIPTION", "HEALTH"))
    for p in processes:
        table.add_row(node, p.namespec, state_text(p.statename), str(p.pid) if p.pid else "-",
                      *((health_cell(p),) if health else ()), p.description)
    return table


# supervisorctl's words for each fault
FAULT_TEXT = {"BAD_NAME": "no such process", "NO_FILE": "no such file", "NOT_EXECUTABLE": "file is not executable",
              "ALREADY_STARTED": "already started", "SPAWN_ERROR": "spawn error",
              "ABNORMAL_TERMINATION": "abnormal termination", "NOT_RUNNING": "not running"}


def fault_text(status: str) -> str:
    """supervisorctl's wording of a fault name: `SPAWN_ERROR` -> "spawn error"."""
    return FAULT_TEXT.get(status, status.lower().replace("_", " "))


def command_results(results: Iterable[pb.ProcessResult], verb: str) -> Group:
    """supervisorctl-style lines: `name: started` or `name: ERROR (already started)`."""
    return Group(*(Text(f"{r.name}: {verb}") if r.ok
                   else Text.assemble(f"{r.name}: ", ("ERROR", "red"), f" ({fault_text(r.status)})")
                   for r in results))
