"""How fleetctl shows things: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys

from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["FAULT_TEXT", "STATE_STYLE", "as_dict", "command_results", "err", "escape", "fault_text", "out",
           "print_json", "process_table", "state_text", "write_log"]

STATE_STYLE = {
    "RUNNING": "green", "STARTING": "cyan", "STOPPING": "yellow", "BACKOFF": "bold yellow",
    "STOPPED": "dim", "EXITED": "yellow", "FATAL": "bold red", "UNKNOWN": "bold red",
}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def as_dict(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def write_log(chunks, as_json: bool = False) -> None:
    """LogChunks to stdout as they come: raw bytes, or one JSON object per chunk for programs."""
    if as_json:
        for chunk in chunks:
            json.dump({"data": chunk.data.decode("utf-8", "replace"), "offset": chunk.offset,
                       "truncated": chunk.truncated}, sys.stdout, sort_keys=True)
            sys.stdout.write("\n")
            sys.stdout.flush()
        return
    stream = sys.stdout.buffer
    for chunk in chunks:
        stream.write(chunk.data)
        stream.flush()


def state_text(statename: str) -> str:
    style = STATE_STYLE.get(statename, "")
    return f"[{style}]{statename}[/]" if style else statename


def process_table(node: str, processes) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NODE", "NAME", "STATE", "PID", "DESCRIPTION"):
        table.add_column(column, no_wrap=column != "DESCRIPTION")
    for p in processes:
        table.add_row(node, p.namespec, state_text(p.statename), str(p.pid) if p.pid else "-", p.description)
    return table


# supervisorctl's words for each fault
FAULT_TEXT = {"BAD_NAME": "no such process", "NO_FILE": "no such file", "NOT_EXECUTABLE": "file is not executable",
              "ALREADY_STARTED": "already started", "SPAWN_ERROR": "spawn error",
              "ABNORMAL_TERMINATION": "abnormal termination", "NOT_RUNNING": "not running"}


def fault_text(status: str) -> str:
    """supervisorctl's wording of a fault name: `SPAWN_ERROR` -> "spawn error"."""
    return FAULT_TEXT.get(status, status.lower().replace("_", " "))


def command_results(results, verb: str) -> None:
    """supervisorctl-style lines: `name: started` or `name: ERROR (already started)`."""
    for r in results:
        if r.ok:
            out.print(f"{r.name}: {verb}")
        else:
            out.print(f"{r.name}: [red]ERROR[/] ({fault_text(r.status)})")
