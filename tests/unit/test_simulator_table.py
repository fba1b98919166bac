"""The fleet simulator's pure parts: a virtual process table driven by the agent's lifecycle on
a clock given by hand, the churn's choices, the synthetic log's offsets."""

from __future__ import annotations

import random

import pytest

from benchmarks.simulator.churn import Churn, ChurnRates
from benchmarks.simulator.configs import ConfigCache
from benchmarks.simulator.process_table import EXIT_DELAY, PidSource, ProcessTable, StateChange, flappable
from benchmarks.simulator.synthetic_log import SyntheticLog
from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.faults import Fault
from fleetvisor.agent.states import ProcessState as S
from fleetvisor.agent.supervisor import GroupChange

PROGRAMS = """
[program:web]
command=/srv/web
numprocs=2
process_name=%(program_name)s_%(process_num)02d

[program:once]
command=/srv/once
autostart=false
autorestart=false
"""


@pytest.fixture
def cache():
    c = ConfigCache(PROGRAMS)
    yield c
    c.close()


def table_of(cache: ConfigCache) -> tuple[ProcessTable, list]:
    table = ProcessTable(cache.node.groups, pids=PidSource(random.Random(1)), log_dir="/logs")
    changes: list = []
    table.subscribe(changes.append)
    return table, changes


# Times start at 1000: a laststart of 0 reads as "never started" to the lifecycle, as in supervisord.


def run_until(table: ProcessTable, until: float) -> float:
    """Advance the table through every due moment up to `until`, as node.py's timer does."""
    now = table.now
    while (due := table.next_due()) is not None and due <= until:
        now = max(now, due)
        table.advance(now)
    table.advance(until)
    return until


def transitions(changes: list, namespec: str) -> list[tuple[str, str]]:
    return [(c.old.name, c.new.name) for c in changes
            if isinstance(c, StateChange) and c.process.namespec == namespec]


def test_autostart_goes_through_starting_to_running_after_startsecs(cache):
    table, changes = table_of(cache)
    table.autostart(100.0)
    assert {p.namespec: p.state for p in table.processes()} == {
        "web:web_00": S.STARTING, "web:web_01": S.STARTING, "once": S.STOPPED}
    run_until(table, 100.5)
    assert table.resolve(["web:*"])[0].state == S.STARTING  # startsecs=1 not over yet
    run_until(table, 101.1)
    assert [p.state for p in table.resolve(["web:*"])] == [S.RUNNING, S.RUNNING]
    assert transitions(changes, "web:web_00") == [("STOPPED", "STARTING"), ("STARTING", "RUNNING")]
    assert all(p.pid for p in table.resolve(["web:*"]))


def test_a_flap_exits_then_autorestart_brings_it_back_with_a_new_pid(cache):
    table, changes = table_of(cache)
    table.autostart(1000.0)
    run_until(table, 1002.0)
    proc = table.resolve(["web:web_01"])[0]
    pid = proc.pid
    assert table.flap(proc, 1010.0, through_backoff=False)
    assert proc.state == S.STARTING and proc.pid != pid
    run_until(table, 1011.5)
    assert proc.state == S.RUNNING
    assert transitions(changes, "web:web_01")[2:] == [
        ("RUNNING", "EXITED"), ("EXITED", "STARTING"), ("STARTING", "RUNNING")]
    exited = next(c for c in changes if isinstance(c, StateChange) and c.new == S.EXITED)
    assert exited.expected is False and exited.exitstatus == 1 and exited.pid == 0


def test_a_flap_through_backoff_dies_once_more_before_startsecs(cache):
    table, changes = table_of(cache)
    table.autostart(1000.0)
    run_until(table, 1002.0)
    proc = table.resolve(["web:web_00"])[0]
    table.flap(proc, 1010.0, through_backoff=True)
    run_until(table, 1014.0)
    assert proc.state == S.RUNNING
    assert transitions(changes, "web:web_00")[2:] == [
        ("RUNNING", "EXITED"), ("EXITED", "STARTING"), ("STARTING", "BACKOFF"), ("BACKOFF", "STARTING"),
        ("STARTING", "RUNNING")]


def test_only_running_autorestarted_processes_flap(cache):
    table, _ = table_of(cache)
    table.autostart(1000.0)
    table.start(table.resolve(["once"]), 1000.0)
    run_until(table, 1002.0)
    assert [p.namespec for p in flappable(table.processes())] == ["web:web_00", "web:web_01"]
    assert not table.flap(table.resolve(["once"])[0], 1003.0, through_backoff=False)


def test_stop_start_and_the_refusals_of_supervisord(cache):
    table, _ = table_of(cache)
    table.autostart(1000.0)
    run_until(table, 1002.0)
    web = table.resolve(["web:*"])
    assert [o.status for o in table.start(web, 1002.0)] == [Fault.ALREADY_STARTED] * 2
    assert [o.ok for o in table.stop(web, 1003.0)] == [True, True]
    assert web[0].state == S.STOPPING
    run_until(table, 1003.0 + EXIT_DELAY)
    assert [p.state for p in web] == [S.STOPPED, S.STOPPED] and not web[0].pid
    assert [o.status for o in table.stop(web, 1004.0)] == [Fault.NOT_RUNNING] * 2
    with pytest.raises(Exception, match="BAD_NAME"):
        table.resolve(["nope"])


def test_a_fatal_signal_kills_and_autorestart_follows_a_handled_one_does_nothing(cache):
    table, _ = table_of(cache)
    table.autostart(1000.0)
    run_until(table, 1002.0)
    proc = table.resolve(["web:web_00"])[0]
    pid = proc.pid
    table.signal([proc], 1, 1003.0)  # SIGHUP: handled
    run_until(table, 1004.0)
    assert proc.pid == pid and table.signals_handled == 1
    table.signal([proc], 15, 1005.0)  # SIGTERM, not as a stop: it dies, unexpectedly
    run_until(table, 1007.0)
    assert proc.state == S.RUNNING and proc.pid != pid


def test_groups_come_and_go_with_their_events(cache):
    table, changes = table_of(cache)
    groups = cache.with_revision("cfg@1", "[program:extra]\ncommand=/srv/extra\nstartsecs=0\n")
    extra = next(g for g in groups if g.name == "extra")
    table.add_group(extra, 1001.0)
    assert GroupChange("extra", True) in changes
    assert table.resolve(["extra"])[0].state == S.STARTING
    run_until(table, 1001.1)
    assert table.resolve(["extra"])[0].state == S.RUNNING
    table.remove_group("extra")
    assert changes[-1] == GroupChange("extra", False) and "extra" not in table.groups


def test_the_agents_parser_refuses_a_revision_that_redefines_a_local_program(cache):
    with pytest.raises(ConfigError, match="already defined") as caught:
        cache.with_revision("cfg@2", "[program:web]\ncommand=/srv/other\n")
    assert caught.value.file == "revision cfg@2"
    with pytest.raises(ConfigError, match="only \\[program:x\\]"):
        cache.with_revision("cfg@3", "[supervisord]\nlogfile=/tmp/x\n")


def test_churn_shares_rates_and_repeats_with_a_seed():
    rates = ChurnRates(flaps_per_second=4, outages_per_minute=6, outage_seconds=10).share(2)
    assert (rates.flaps_per_second, rates.outages_per_minute, rates.outage_seconds) == (2, 3, 10)
    a, b = Churn(rates, random.Random(7)), Churn(rates, random.Random(7))
    assert [a.next_flap() for _ in range(5)] == [b.next_flap() for _ in range(5)]
    outage = a.outage(["n1", "n2"])
    assert outage is not None and outage.node in ("n1", "n2") and 5 <= outage.seconds <= 15
    assert a.outage([]) is None
    assert Churn(ChurnRates(), random.Random(1)).next_flap() is None


def test_synthetic_log_offsets_grow_and_old_bytes_rotate_away():
    log = SyntheticLog("web", capacity=200)
    log.started(0.0, 42)
    data, end, truncated = log.read(0, 0.0)
    assert b"starting with pid 42" in data and end == len(data) and not truncated
    data, end2, _ = log.read(end, 60.0)  # a minute of uptime: activity lines, some rotated away
    assert b"handled" in data and end2 > end and log.base > 0
    data, end3, truncated = log.read(0, 60.0)
    assert truncated and end3 == end2 and len(data) <= 200
    tail, _, _ = log.read(0, 60.0, last_bytes=30)
    assert len(tail) == 30
