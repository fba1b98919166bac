"""Following a log file as it grows, like ``tail -F``: the engine behind every log stream.

A follower starts `head` bytes before the end, then hands out whatever is appended. It
survives the two things that happen to logs:

- rotation (ours at maxbytes, or logrotate's rename): the old file is read to its end,
  then the new file at the same path is followed from its start;
- truncation (clearLog, ``copytruncate``): a ``==> File truncated <==`` line, then the file
  is followed from its start, as supervisord's tail does.

It wakes on inotify events for the file; where inotify is unavailable it re-checks on a slow
timer (`POLL_INTERVAL`), which costs one fstat and one stat per interval and follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from .inotify import Watcher
from .timeouts import wait_within

TRUNCATED = b"==> File truncated <==\n"
CHUNK = 64 * 1024
# Only without inotify: how stale a follower may be. supervisord re-checks every 0.1 s; a
# half second is plenty for a human watching and keeps idle followers nearly free.
POLL_INTERVAL = 0.5


@dataclass(frozen=True)
class Piece:
    data: bytes
    offset: int  # the file offset just after `data`
    truncated: bool = False  # the file was rotated or truncated before this piece


async def follow(path: str, head: int = 1024) -> AsyncGenerator[bytes, None]:
    """Yield chunks appended to the file at `path`, starting `head` bytes before its end
    (from the start if it is smaller). Raises OSError if it cannot be opened at first."""
    async with contextlib.aclosing(follow_pieces(path, head=head)) as pieces:
        async for piece in pieces:
            yield piece.data


async def follow_pieces(path: str, *, head: int = 1024, start: int | None = None) -> AsyncGenerator[Piece, None]:
    """As `follow`, with where each chunk ends in the file: a reader that lost its stream can
    ask again from there. `start`: an absolute offset to begin at instead of `head` (from the
    start of the file if it is past the end: the file was rotated or truncated meanwhile)."""
    f = open(path, "rb", buffering=0)  # closed in finally, may be replaced
    changed = asyncio.Event()
    cancel_watch = None
    try:
        cancel_watch = Watcher.for_loop().watch(path, changed.set)
    except OSError:
        pass
    try:
        st = os.fstat(f.fileno())
        identity = (st.st_dev, st.st_ino)
        if start is not None:
            position = start if 0 <= start <= st.st_size else 0
        else:
            position = st.st_size - head if st.st_size >= head else 0
        replaced = False
        while True:
            changed.clear()
            size = os.fstat(f.fileno()).st_size
            if size < position:
                position = 0
                yield Piece(TRUNCATED, 0, True)
                continue
            if size > position:
                f.seek(position)
                data = f.read(min(size - position, CHUNK))
                if data:
                    position += len(data)
                    yield Piece(data, position, replaced)
                    replaced = False
                    continue
            # Nothing more in the open file. Has the path moved on to a new one?
            try:
                current = os.stat(path)
            except OSError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) != identity:
                try:
                    replacement = open(path, "rb", buffering=0)
                except OSError:
                    replacement = None
                if replacement is not None:
                    f.close()
                    f = replacement
                    st = os.fstat(f.fileno())
                    identity = (st.st_dev, st.st_ino)
                    position = 0
                    replaced = True
                    continue
            if cancel_watch is None:
                await wait_within(changed.wait(), POLL_INTERVAL)
            else:
                await changed.wait()
    finally:
        if cancel_watch is not None:
            cancel_watch()
        f.close()
