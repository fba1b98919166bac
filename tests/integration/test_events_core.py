"""Events the core raises on request, driven in-process (the XML-RPC face that calls these is
tested on its own): group added/removed, remote communication, pool removal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fleetvisor.agent.config.parser import load
from fleetvisor.agent.mainlog import Level, MainLog
from fleetvisor.agent.states import ProcessState
from fleetvisor.agent.supervisor import Supervisor

from tests.support import eventually

from .events_helpers import conf, named, recorder, records


def test_group_and_remote_communication_events(tmp_path: Path):
    out = tmp_path / "events.jsonl"
    main = conf(tmp_path, f"""
        [eventlistener:rec]
        command={recorder(out)}
        events=PROCESS_GROUP,REMOTE_COMMUNICATION,SUPERVISOR_STATE_CHANGE_RUNNING
        startsecs=0
    """)
    (tmp_path / "more").mkdir()
    extra = conf(tmp_path / "more", """
        [program:extra]
        command=sleep 1000
        autostart=false

        [eventlistener:other]
        command=sleep 1000
        events=EVENT
        autostart=false
    """)

    async def scenario() -> None:
        core = Supervisor(load(str(main)), MainLog(None, maxbytes=0, backups=0, level=Level.INFO))
        task = asyncio.create_task(core.run())
        try:
            await eventually(lambda: named("SUPERVISOR_STATE_CHANGE_RUNNING")(records(out)), what="RUNNING event")
            more = load(str(extra))
            for group in more.groups:
                assert core.add_group(group)
            core.publish_remote_comm("alert", "disk full\non /var")
            assert core.remove_group("other")
            assert core.remove_group("extra")
            # a removed pool gets nothing more
            assert not core.events.wants("TICK_5")
            await eventually(lambda: len(records(out)) >= 7, what="7 events")
        finally:
            core.shutdown()
            await asyncio.wait_for(task, 30)
        assert all(p.state == ProcessState.STOPPED for p in core.all_processes())

    asyncio.run(scenario())
    got = [(r["headers"]["eventname"], r["payload"]) for r in records(out)]
    assert got == [
        ("PROCESS_GROUP_ADDED", "groupname:rec\n"),
        ("SUPERVISOR_STATE_CHANGE_RUNNING", ""),
        ("PROCESS_GROUP_ADDED", "groupname:other\n"),  # listeners sort first (priority -1)
        ("PROCESS_GROUP_ADDED", "groupname:extra\n"),
        ("REMOTE_COMMUNICATION", "type:alert\ndisk full\non /var"),
        ("PROCESS_GROUP_REMOVED", "groupname:other\n"),
        ("PROCESS_GROUP_REMOVED", "groupname:extra\n"),
    ]
    # the global serial is process-wide (other in-process tests used some); the pool's is its own
    serials = [int(r["headers"]["serial"]) for r in records(out)]
    assert serials == list(range(serials[0], serials[0] + 7))
    assert [int(r["headers"]["poolserial"]) for r in records(out)] == list(range(7))
