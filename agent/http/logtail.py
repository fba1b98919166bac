"""/logtail/<namespec>[/stdout|/stderr] and /mainlogtail: logs streamed as they grow.

supervisorctl's `tail -f`, `maintail -f` and `fg` read these: a chunked response that starts
with the last kilobyte of the log and never ends while the client stays (an HTTP/1.0 client
gets the bytes unchunked, ended by closing the connection). A missing process,
channel or file is 404 (a log that does not exist yet is a temporary condition).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
from typing import TYPE_CHECKING

from aiohttp import web

from .. import operations
from ..caller import Caller
from ..faults import FaultError
from ..logfollow import follow

if TYPE_CHECKING:
    from ..supervisor import Supervisor

HEAD = 1024  # bytes of history a stream starts with, as supervisord
_STREAMS = web.AppKey("logtail_streams", set)


def install(app: web.Application, core: Supervisor) -> None:
    streams: set[asyncio.Task] = set()
    app[_STREAMS] = streams

    async def process_log(request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return _status(400)
        spec = request.match_info.get("spec", "")
        name, _, channel = spec.partition("/")
        try:
            path = operations.log_path(core, _caller(request), name, channel or "stdout")
        except FaultError:
            return _status(404)  # no such process or channel
        return await _stream(request, path, streams)

    async def main_log(request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return _status(400)
        return await _stream(request, operations.main_log_path(core, _caller(request)), streams)

    async def close_streams(_app: web.Application) -> None:
        for task in list(streams):
            task.cancel()

    app.router.add_route("*", "/logtail/{spec:.*}", process_log)
    app.router.add_route("*", "/logtail", _not_found)
    app.router.add_route("*", "/mainlogtail{rest:.*}", main_log)
    app.on_shutdown.append(close_streams)


def _caller(request: web.Request) -> Caller:
    return Caller("logtail", request.remote or "")


async def _not_found(_request: web.Request) -> web.Response:
    return _status(404)


def _status(code: int) -> web.Response:
    return web.Response(status=code, text=f"{code} {'Not Found' if code == 404 else 'Bad Request'}\n")


async def _stream(request: web.Request, path: str | None, streams: set[asyncio.Task]
                  ) -> web.StreamResponse:
    if path is None or not os.path.isfile(path):
        return _status(404)
    try:
        chunks = follow(path, HEAD)
        mtime = os.stat(path).st_mtime
    except OSError:
        return _status(404)
    response = web.StreamResponse(headers={
        "Content-Type": "text/plain;charset=utf-8",
        "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
        "X-Accel-Buffering": "no",  # no proxy buffering of a stream
    })
    if request.version >= (1, 1):
        response.enable_chunked_encoding()
    # else an HTTP/1.0 client, which cannot take chunks: the stream ends when the connection closes
    task = asyncio.current_task()
    assert task is not None
    streams.add(task)
    try:
        await response.prepare(request)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await response.write(chunk)
    except (ConnectionError, OSError):
        pass  # the client went away
    finally:
        streams.discard(task)
    return response
