"""The core's multi-target calls, driven in-process on real processes: resolving names,
start/stop/restart/signal over several processes (one change subscription per call), a
process's log path and the agent's own description. The faces that call these (gRPC, the
web page, /logtail, the heartbeat) are tested on their own."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from fleetvisor.agent import operations as ops
from fleetvisor.agent.caller import Caller
from fleetvisor.agent.config.parser import load
from fleetvisor.agent.faults import Fault, FaultError
from fleetvisor.agent.mainlog import Level, MainLog
from fleetvisor.agent.states import ProcessState, SupervisorState
from fleetvisor.agent.supervisor import ProcessStateChange, Supervisor

from .events_helpers import conf

ME = Caller("local", "test")

PROGRAMS = """
    [program:web]
    command=sleep 1000
    numprocs=2
    process_name=%(program_name)s_%(process_num)s
    priority=5
    startsecs=1

    [program:alpha]
    command=sleep 1000
    priority=10
    startsecs=0

    [program:idle]
    command=sleep 1000
    priority=20
    startsecs=0
    autostart=false
    stdout_logfile=NONE
"""


def run(tmp_path: Path, scenario: Callable[[Supervisor], Awaitable[None]], programs: str = PROGRAMS,
        autostarted: tuple[str, ...] = ("web_0", "web_1", "alpha")) -> None:
    """`scenario` against a running core, every process stopped afterwards."""
    main = conf(tmp_path, programs)

    async def body() -> None:
        core = Supervisor(load(str(main)), MainLog(None, maxbytes=0, backups=0, level=Level.INFO))
        task = asyncio.create_task(core.run())
        try:
            assert await core.wait_until(
                lambda: all(p.state == ProcessState.RUNNING for p in core.all_processes() if p.name in autostarted),
                timeout=15), "the autostarted processes never ran"
            await scenario(core)
        finally:
            core.shutdown()
            await asyncio.wait_for(task, 30)

    asyncio.run(body())


def specs(procs) -> list[str]:
    return [ops.make_namespec(p.group.name, p.name) for p in procs]


class Subscriptions:
    """Counts the change subscriptions the core is asked for while in use."""

    def __init__(self, core: Supervisor) -> None:
        self.core, self.count = core, 0

    def __enter__(self) -> Subscriptions:
        real = self.core.subscribe

        def counting(callback):
            self.count += 1
            return real(callback)

        self.core.subscribe = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.core.subscribe  # back to the class's method


def test_resolve_names_groups_and_all(tmp_path):
    async def scenario(core: Supervisor) -> None:
        assert specs(ops.resolve(core, ME, ["all"])) == ["web:web_0", "web:web_1", "alpha", "idle"]
        # priority order and each process once, however it is named
        assert specs(ops.resolve(core, ME, ["idle", "web:*", "web:web_1", "alpha"])) == [
            "web:web_0", "web:web_1", "alpha", "idle"]
        assert specs(ops.resolve(core, ME, ["web:"])) == ["web:web_0", "web:web_1"]
        assert ops.resolve(core, ME, []) == []
        for bad in (["alpha", "ghost"], ["web:nope"], ["nogroup:*"]):
            with pytest.raises(FaultError) as info:
                ops.resolve(core, ME, bad)
            assert info.value.code == Fault.BAD_NAME
        assert ops.find_process(core, ME, "web:web_0").name == "web_0"
        with pytest.raises(FaultError) as info:
            ops.find_process(core, ME, "web:*")  # a group is no process
        assert info.value.code == Fault.BAD_NAME

    run(tmp_path, scenario)


def test_stop_and_start_report_every_target_in_order_with_one_subscription(tmp_path):
    async def scenario(core: Supervisor) -> None:
        targets = ops.resolve(core, ME, ["all"])
        with Subscriptions(core) as subs:
            stopped = await ops.stop_processes(core, ME, targets)
        assert subs.count == 1
        assert [(r.namespec, r.status, r.state) for r in stopped] == [
            ("web:web_0", Fault.SUCCESS, ProcessState.STOPPED),
            ("web:web_1", Fault.SUCCESS, ProcessState.STOPPED),
            ("alpha", Fault.SUCCESS, ProcessState.STOPPED),
            ("idle", Fault.NOT_RUNNING, ProcessState.STOPPED)]  # asked for, so reported
        assert stopped[3].description == "NOT_RUNNING: idle"

        with Subscriptions(core) as subs:
            started = await ops.start_processes(core, ME, targets)
        assert subs.count == 1  # for the two web processes that take a second to be RUNNING
        assert [(r.namespec, r.ok, r.state) for r in started] == [
            ("web:web_0", True, ProcessState.RUNNING), ("web:web_1", True, ProcessState.RUNNING),
            ("alpha", True, ProcessState.RUNNING), ("idle", True, ProcessState.RUNNING)]
        again = await ops.start_processes(core, ME, ops.resolve(core, ME, ["alpha"]))
        assert [(r.status, r.description) for r in again] == [(Fault.ALREADY_STARTED, "ALREADY_STARTED: alpha")]

    run(tmp_path, scenario)


def test_restart_stops_every_target_then_starts_them(tmp_path):
    async def scenario(core: Supervisor) -> None:
        seen: list[ProcessStateChange] = []
        unsubscribe = core.subscribe(lambda c: seen.append(c) if isinstance(c, ProcessStateChange) else None)
        targets = ops.resolve(core, ME, ["web:*", "alpha", "idle"])
        before = {p.name: p.pid for p in targets}
        with Subscriptions(core) as subs:
            results = await ops.restart_processes(core, ME, targets)
        unsubscribe()
        assert subs.count == 1  # the stops and the starts share one
        assert [(r.namespec, r.ok, r.state) for r in results] == [
            ("web:web_0", True, ProcessState.RUNNING), ("web:web_1", True, ProcessState.RUNNING),
            ("alpha", True, ProcessState.RUNNING), ("idle", True, ProcessState.RUNNING)]
        assert all(p.pid and p.pid != before[p.name] for p in targets)
        # idle was not running: it is just started, never stopped
        assert not [c for c in seen if c.process.name == "idle" and c.new == ProcessState.STOPPING]
        stops = [i for i, c in enumerate(seen) if c.new == ProcessState.STOPPED]
        starts = [i for i, c in enumerate(seen) if c.new == ProcessState.STARTING]
        assert len(stops) == 3 and len(starts) == 4 and max(stops) < min(starts)
        # and started in target (priority) order
        assert [seen[i].process.name for i in starts] == ["web_0", "web_1", "alpha", "idle"]

    run(tmp_path, scenario)


def test_restart_of_a_process_that_cannot_start_again_says_why(tmp_path):
    script = tmp_path / "prog.sh"
    script.write_text("#!/bin/sh\nexec sleep 1000\n")
    script.chmod(0o755)

    async def scenario(core: Supervisor) -> None:
        prog = ops.find_process(core, ME, "prog")
        script.unlink()  # the command is looked for at each start
        [result] = await ops.restart_processes(core, ME, [prog])
        assert result.status == Fault.NO_FILE and prog.state == ProcessState.STOPPED

    run(tmp_path, scenario, programs=f"""
        [program:prog]
        command={script}
        startsecs=0
        """, autostarted=("prog",))


def test_signal_checks_the_signal_before_sending_any(tmp_path):
    async def scenario(core: Supervisor) -> None:
        targets = ops.resolve(core, ME, ["web:*", "idle"])
        with pytest.raises(FaultError) as info:
            await ops.signal_processes(core, ME, targets, "NOPE")
        assert info.value.code == Fault.BAD_SIGNAL
        assert [p.state for p in targets] == [ProcessState.RUNNING, ProcessState.RUNNING, ProcessState.STOPPED]
        pids = {p.name: p.pid for p in targets}
        with Subscriptions(core) as subs:
            results = await ops.signal_processes(core, ME, targets, "TERM")
        assert subs.count == 0  # nothing to wait for
        assert [(r.namespec, r.status) for r in results] == [
            ("web:web_0", Fault.SUCCESS), ("web:web_1", Fault.SUCCESS), ("idle", Fault.NOT_RUNNING)]
        assert await core.wait_until(lambda: all(p.pid != pids[p.name] for p in targets[:2]), timeout=15), \
            "the signalled processes did not exit"
        [by_number] = await ops.signal_processes(core, ME, ops.resolve(core, ME, ["alpha"]), signal.SIGCONT)
        assert by_number.ok and by_number.state == ProcessState.RUNNING

    run(tmp_path, scenario)


def test_log_paths(tmp_path):
    async def scenario(core: Supervisor) -> None:
        out = ops.log_path(core, ME, "alpha")
        err = ops.log_path(core, ME, "alpha", "stderr")
        assert out and err and out != err and Path(out).parent == tmp_path
        assert ops.log_path(core, ME, "alpha", "stdout", existing=True) == out
        assert ops.log_path(core, ME, "idle") is None
        for name, channel, fault in (("idle", "stdout", Fault.NO_FILE), ("web:*", "stdout", Fault.BAD_NAME),
                                     ("ghost", "stdout", Fault.BAD_NAME), ("alpha", "stdin", Fault.BAD_ARGUMENTS)):
            with pytest.raises(FaultError) as info:
                ops.log_path(core, ME, name, channel, existing=True)
            assert info.value.code == fault, (name, channel)
        assert ops.main_log_path(core, ME) is None  # this core logs nowhere

    run(tmp_path, scenario)


def test_agent_info(tmp_path):
    async def scenario(core: Supervisor) -> None:
        info = ops.agent_info(core, ME)
        assert info.node == os.uname().nodename and dict(info.labels) == {}
        assert info.pid == os.getpid() and info.state == SupervisorState.RUNNING
        assert info.identifier == "supervisor" and info.applied_revision == ""
        assert info.supervisor_version == "4.3.0" and info.api_version == "3.0"
        assert info.started_at == core.started_at and info.uptime >= 0

    run(tmp_path, scenario)


def test_calls_are_refused_while_shutting_down(tmp_path):
    async def scenario(core: Supervisor) -> None:
        targets = ops.resolve(core, ME, ["alpha"])
        core.shutdown()
        for call in (ops.start_processes(core, ME, targets), ops.stop_processes(core, ME, targets),
                     ops.restart_processes(core, ME, targets), ops.signal_processes(core, ME, targets, "HUP")):
            with pytest.raises(FaultError) as info:
                await call
            assert info.value.code == Fault.SHUTDOWN_STATE

    run(tmp_path, scenario)
