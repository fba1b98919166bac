"""Who leads, and the leader-only work that starts and stops with leadership."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .election import Election
from .records import fits

log = logging.getLogger("fleetvisor.controller")


def identity(controller_id: str, address: str) -> bytes:
    return json.dumps({"id": controller_id, "address": address}, sort_keys=True).encode()


class Leadership:
    """Runs `duties` (a coroutine factory) exactly while this controller leads."""

    def __init__(self, election: Election, duties: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.election = election
        self.duties = duties
        self._task: asyncio.Task[None] | None = None
        election.on_change(self._changed)

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader

    def _holder(self) -> dict[str, str]:
        """The leader key's {"id", "address"}; empty when it holds anything else (unreadable.py
        reports that)."""
        try:
            data = json.loads(self.election.leader or b"{}")
        except ValueError:
            return {}
        return data if fits(data, dict[str, str]) else {}

    @property
    def leader_id(self) -> str:
        return self._holder().get("id", "")

    @property
    def leader_address(self) -> str:
        return self._holder().get("address", "")

    def _changed(self, *_: object) -> None:
        if self.is_leader and self._task is None:
            log.info("this controller is now the leader")
            self._task = asyncio.create_task(self.duties(), name="leader duties")
        elif not self.is_leader and self._task is not None:
            log.warning("this controller is no longer the leader (leader: %s)", self.leader_id or "none")
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
