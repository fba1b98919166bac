"""Fixtures for controller tests: a real etcd per test (starts in well under a second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .etcd_harness import EtcdServer
from .fleet_harness import Agent, Controller


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class Fleet:
    """Controllers and agents started by a test, all stopped at its end (also on failure)."""

    def __init__(self, base: Path, etcd: EtcdServer) -> None:
        self.base = base
        self.etcd = etcd
        self.controllers: list[Controller] = []
        self.agents: list[Agent] = []

    def controller(self, name: str | None = None, **kwargs) -> Controller:
        ctl = Controller(self.base, self.etcd.endpoint, name=name or f"ctl-{len(self.controllers) + 1}", **kwargs)
        self.controllers.append(ctl)
        return ctl

    def agent(self, node: str, *controllers: Controller | str, **kwargs) -> Agent:
        addresses = [c if isinstance(c, str) else c.address for c in controllers]
        agent = Agent(self.base, node, addresses, **kwargs)
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        """Stop everything, even when stopping one of them fails (then kill it)."""
        for agent in self.agents:
            try:
                agent.stop()
            except Exception:
                agent.kill()
            agent.reap_orphans()
        for ctl in self.controllers:
            try:
                ctl.stop()
            except Exception:
                ctl.kill()


@pytest.fixture
def fleet(tmp_path: Path, etcd: EtcdServer) -> Iterator[Fleet]:
    f = Fleet(tmp_path, etcd)
    try:
        yield f
    finally:
        f.close()
