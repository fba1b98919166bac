"""Event listener pools across a re-exec: buffers, serials, and each listener's place in the
READY/RESULT protocol, so that listeners go on as if the agent had never changed."""

from __future__ import annotations

from ..events import Event
from ..listener import ListenerPool, ListenerState
from ..supervisor import Supervisor
from .state import EventState, ListenerSave, PoolState


def _save_event(event: Event | None) -> EventState | None:
    if event is None:
        return None
    return EventState(event.name, event.payload, event.serial, dict(event.pool_serials))


def _load_event(saved: EventState) -> Event:
    return Event(saved.name, saved.payload, saved.serial, dict(saved.pool_serials))


def capture_pools(core: Supervisor) -> list[PoolState]:
    pools = []
    for group in core.groups.values():
        pool = group.pool
        if pool is None:
            continue
        listeners = []
        for listener in pool.listeners:
            state, unparsed, result_len, result = listener.protocol.where()
            listeners.append(ListenerSave(
                namespec=listener.process.namespec, state=state.name, unparsed=unparsed.decode("latin-1"),
                result_len=result_len, result=result.decode("latin-1"), event=_save_event(listener.event)))
        pools.append(PoolState(name=pool.name, serial=pool.serial.value,
                               buffer=[e for e in map(_save_event, pool.buffer) if e is not None],
                               listeners=listeners))
        pool.close()
    return pools


def restore_pools(core: Supervisor, pools: list[PoolState]) -> None:
    """After the children are adopted: each pool's buffer, serial and listeners as they were.
    Pools the config no longer has are dropped (their events with them)."""
    for saved in pools:
        group = core.groups.get(saved.name)
        pool: ListenerPool | None = group.pool if group is not None else None
        if pool is None:
            continue
        pool.serial.value = saved.serial
        pool.buffer.extend(_load_event(e) for e in saved.buffer)
        by_spec = {listener.process.namespec: listener for listener in pool.listeners}
        for item in saved.listeners:
            listener = by_spec.get(item.namespec)
            if listener is None or not listener.process.pid:
                continue
            if item.event is not None:
                listener.sent(_load_event(item.event))  # BUSY, and its answer is awaited
            listener.protocol.resume(ListenerState[item.state], item.unparsed.encode("latin-1"), item.result_len,
                                     item.result.encode("latin-1"))
        pool.schedule_dispatch()
