"""What a gRPC status says: one line of bounded length, on the agent and the controller alike.

A refusal often repeats what the request named, and a request may name anything: a newline
would split the one error line clients print, and a megabyte would exceed the client's
metadata limit, which then reports its own RESOURCE_EXHAUSTED and loses the refusal.
"""

from __future__ import annotations

LIMIT = 500  # characters; percent-encoded in the trailers, this stays well inside gRPC's 8 KiB


def details(text: str) -> str:
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:LIMIT + 1])
    if len(text) <= LIMIT and len(line) <= LIMIT:
        return line
    return f"{line[:LIMIT]}... ({len(text)} characters)"
