"""An in-memory copy of one etcd prefix, kept current by a watch.

Every controller serves reads from memory instead of asking etcd each time, so the copy
must never silently drift: it is loaded with one consistent read and then fed by a watch
that starts at exactly the next revision. When the watch breaks (etcd restarted, the
connection dropped) it is re-opened from the last revision applied, so nothing is missed
and nothing is applied twice. When that revision is gone (compacted) or etcd went back in
time (restored from a backup), the copy is reloaded and the difference is reported as
ordinary changes, so subscribers never need a special "resync" path.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aetcd
from aetcd import rpc

from .backoff import Backoff
from .etcd import (
    CallCutOff,
    EtcdError,
    WatchCompacted,
    WatchStream,
    being_cancelled,
    describe,
    event_revision,
    prefix_range_end,
    recover,
    request_timeout,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 1000


class Rewound(Exception):
    """etcd's revision is behind ours: its data was restored or replaced, so reload.

    etcd accepts a watch from a future revision and just waits for it, which would silently
    skip everything up to there; this check catches the rewind while etcd is still behind.
    """


@dataclass(frozen=True)
class Change:
    """One key's new value (None: deleted) as of `revision`; keys are relative to the prefix."""

    key: str
    value: bytes | None
    revision: int


Subscriber = Callable[[list[Change]], None]


class Mirror:
    """Every key under `prefix`, relative to it, with the revision it is current to.

    `subscribe` callbacks run on the event loop after the copy was updated, once per etcd
    watch response (the events of one transaction arrive together). The initial load is not
    reported as changes: read `items()` after `start()`.
    """

    def __init__(self, client: aetcd.Client, prefix: str) -> None:
        self.prefix = prefix
        self._client = client
        self._start = prefix.encode()
        self._end = prefix_range_end(self._start)
        self._data: dict[str, bytes] = {}
        self._keys: list[str] = []  # sorted, so items(subprefix) costs the matches, not the whole copy
        self._subscribers: list[Subscriber] = []
        self._advanced = asyncio.Event()
        self._live: asyncio.Future[None] | None = None
        self._task: asyncio.Task | None = None
        self.revision = 0
        self.connected = False
        # while not connected after having been: since when (unix time) and why
        self.lost_at = 0.0
        self.last_error = ""
        self.reloads = 0  # full re-reads after compaction or a rewound etcd (not the first load)
        self._epoch = 0  # counts whole copies loaded (see generation)
        self._generations: dict[str, int] = {}  # a key's first path element -> changes under it
        self.on_connection: list[Callable[[], None]] = []  # called when `connected` changes

    # -- reading -------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._data.get(key)

    def items(self, subprefix: str = "") -> dict[str, bytes]:
        """A copy of the keys starting with `subprefix`, in key order."""
        if not subprefix:
            return {k: self._data[k] for k in self._keys}
        found = {}
        for key in itertools.islice(self._keys, bisect.bisect_left(self._keys, subprefix), None):
            if not key.startswith(subprefix):
                break
            found[key] = self._data[key]
        return found

    def generation(self, *folders: str) -> tuple[int, ...]:
        """A value that stays the same while no key under the top-level `folders` (such as
        records.MEMBERS) changes: a reader may keep what it worked out from them until it moves."""
        return self._epoch, *(self._generations.get(folder.rstrip("/"), 0) for folder in folders)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(changes)` after each update; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    async def wait_revision(self, revision: int, timeout: float) -> None:
        """Until the copy includes `revision` (e.g. the header revision of our own write).

        Pass the revision of a write under the prefix: etcd 3.4 has no safe way to ask a watch
        for progress, so a revision that changed nothing here is only reached with the next
        change or etcd's periodic progress notification. Raises TimeoutError.
        """
        async with asyncio.timeout(timeout):
            while self.revision < revision:
                await self._advanced.wait()

    def endpoints(self) -> str:
        """The etcd endpoint(s) this copy follows, for messages."""
        client = self._client
        listed = getattr(client, "endpoints", None) or [getattr(client, "endpoint", "")]
        return ",".join(e for e in listed if e) or "?"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the prefix and wait until the watch is established."""
        try:
            data, self.revision = await self._read_all()
        except Exception as exc:
            raise EtcdError(f"cannot read {self.prefix} from etcd: {describe(exc)}") from None
        self._replace(data)
        self._live = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"mirror {self.prefix}")
        try:
            async with asyncio.timeout(request_timeout(self._client)):
                await asyncio.shield(self._live)
        except Exception as exc:
            await self.close()
            raise EtcdError(f"cannot watch {self.prefix} in etcd: {describe(exc)}") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # unlike awaiting it, keeps a cancel of *us* intact
            self._task = None
        self.connected = False

    # -- the watch loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._watch(backoff)
            except asyncio.CancelledError:
                if being_cancelled():
                    raise
                await self._retry_later(CallCutOff(), backoff)  # our stream's channel was retired
            except (WatchCompacted, Rewound) as exc:
                log.warning("etcd watch on %s cannot resume (%s); reloading", self.prefix, describe(exc))
                try:
                    await self._reload()
                except asyncio.CancelledError:
                    if being_cancelled():
                        raise
                    await self._retry_later(CallCutOff(), backoff)
                except Exception as reload_exc:
                    await self._retry_later(reload_exc, backoff)
            except Exception as exc:
                await self._retry_later(exc, backoff)

    async def _watch(self, backoff: Backoff) -> None:
        async with WatchStream(self._client, self._start, self._end, self.revision + 1,
                               progress_notify=True) as stream:
            async for response in stream:
                if response.created:
                    if response.header.revision < self.revision:
                        raise Rewound(f"etcd is at revision {response.header.revision}, "
                                      f"behind our {self.revision} (restored or replaced)")
                    self._set_connected(True)
                    backoff.reset()
                else:
                    self._apply(response)
        raise EtcdError("etcd ended the watch")

    async def _retry_later(self, exc: BaseException, backoff: Backoff) -> None:
        if self._live is not None and not self._live.done():
            self._live.set_exception(exc)
            self._live.exception()  # mark retrieved: start() may already have given up waiting
        if self.connected:
            log.warning("lost etcd watch on %s at revision %d (%s); retrying",
                        self.prefix, self.revision, describe(exc))
            self.lost_at = time.time()
        self.last_error = describe(exc) if not isinstance(exc, CallCutOff) else self.last_error
        self._set_connected(False)
        await recover(self._client, exc)
        await asyncio.sleep(backoff.next())

    def _set_connected(self, connected: bool) -> None:
        if connected and not self.connected and self._live is not None and self._live.done():
            log.info("etcd watch on %s is back at revision %d", self.prefix, self.revision)
        changed, self.connected = connected != self.connected, connected
        if connected:
            self.lost_at, self.last_error = 0.0, ""
        if connected and self._live is not None and not self._live.done():
            self._live.set_result(None)
        if changed:
            for callback in list(self.on_connection):
                callback()

    def _apply(self, response: rpc.WatchResponse) -> None:
        changes: list[Change] = []
        for event in response.events:
            if event.kv.mod_revision <= self.revision:
                continue  # already applied (never expected: we resume at revision + 1)
            key = self._relative(event.kv.key)
            top = key.partition("/")[0]
            self._generations[top] = self._generations.get(top, 0) + 1
            if event.type == rpc.Event.PUT:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = event.kv.value
                changes.append(Change(key, event.kv.value, event.kv.mod_revision))
            else:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
                changes.append(Change(key, None, event.kv.mod_revision))
        self._advance(event_revision(response))
        self._emit(changes)

    async def _reload(self) -> None:
        data, revision = await self._read_all()
        old = self._data
        changes = [Change(k, None, revision) for k in sorted(old.keys() - data.keys())]
        changes += [Change(k, v, revision) for k, v in sorted(data.items()) if old.get(k) != v]
        self._replace(data)
        self.reloads += 1
        self.revision = 0  # may go back in time when etcd was restored from a backup
        self._advance(revision)
        self._emit(changes)

    async def _read_all(self) -> tuple[dict[str, bytes], int]:
        """The whole prefix at one revision, in pages so a large fleet is not one huge reply."""
        await self._client.connect()
        data: dict[str, bytes] = {}
        revision = 0
        key = self._start
        while True:
            request = rpc.RangeRequest(key=key, range_end=self._end, limit=PAGE_SIZE, revision=revision)
            response = await self._client.kvstub.Range(request, timeout=request_timeout(self._client),
                                                       metadata=self._client.metadata)
            revision = revision or response.header.revision
            for kv in response.kvs:
                data[self._relative(kv.key)] = kv.value
            if not response.more or not response.kvs:
                return data, revision
            key = response.kvs[-1].key + b"\0"

    def _replace(self, data: dict[str, bytes]) -> None:
        self._data = data
        self._keys = sorted(data)
        self._epoch += 1

    def _relative(self, key: bytes) -> str:
        return key[len(self._start):].decode("utf-8", "surrogateescape")

    def _advance(self, revision: int) -> None:
        if revision > self.revision:
            self.revision = revision
            event, self._advanced = self._advanced, asyncio.Event()
            event.set()

    def _emit(self, changes: list[Change]) -> None:
        if not changes:
            return
        for callback in list(self._subscribers):
            try:
                callback(changes)
            except Exception as exc:
                log.error("mirror subscriber %r failed: %s", callback, describe(exc),
                          exc_info=log.isEnabledFor(logging.DEBUG))
