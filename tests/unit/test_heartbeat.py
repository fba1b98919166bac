"""The heartbeat's schedule (which controller, when) with a fake clock and fake randomness,
and the [fleetvisor] rule that controllers need grpc_listen."""

from __future__ import annotations

import textwrap

import grpc
import pytest

from fleetvisor.agent.config.errors import ConfigError
from fleetvisor.agent.config.parser import load
from fleetvisor.agent.heartbeat import (DEFAULT_INTERVAL, MIN_INTERVAL, Schedule, Transition,
                                        answered_by, describe_error, format_address, home)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def schedule(*controllers: str, rand: float = 0.0, **kwargs) -> tuple[Schedule, Clock]:
    clock = Clock()
    return Schedule(controllers, clock=clock, rand=lambda: rand, **kwargs), clock


def attempt(s: Schedule, ok: bool, interval: float = 0.0) -> Transition:
    s.started()
    return s.succeeded(interval) if ok else s.failed()


def test_first_heartbeat_is_due_at_once_then_at_the_default_interval():
    s, clock = schedule("a:1")
    assert s.due() == 0 and s.current == "a:1"
    assert attempt(s, True) is Transition.REGISTERED
    assert s.due() == DEFAULT_INTERVAL
    clock.advance(1)
    assert s.due() == DEFAULT_INTERVAL - 1
    assert attempt(s, True) is Transition.NONE  # same controller again: nothing to log


def test_follows_the_interval_the_controller_answers_and_keeps_it_when_unset():
    s, _ = schedule("a:1")
    attempt(s, True, 0.4)
    assert s.due() == pytest.approx(0.4)
    attempt(s, True, 0.0)  # an answer without an interval keeps the last one
    assert s.due() == pytest.approx(0.4)
    attempt(s, True, 0.0001)  # never a busy loop
    assert s.due() == pytest.approx(MIN_INTERVAL)


def test_a_failure_moves_on_to_the_next_controller_at_once_and_sticks_to_it():
    s, _ = schedule("a:1", "b:2", "c:3")
    attempt(s, True)
    assert attempt(s, False) is Transition.NONE
    assert s.current == "b:2" and s.due() == 0 and not s.unreachable
    assert attempt(s, True) is Transition.REGISTERED  # failover is worth a line
    assert s.current == "b:2" and s.registered == "b:2"
    attempt(s, True)
    assert s.current == "b:2"


def test_all_failing_is_reported_once_per_outage_with_doubling_capped_backoff():
    s, _ = schedule("a:1", "b:2", first_backoff=1.0, max_backoff=30.0)
    transitions = []
    delays = []
    for _ in range(16):
        transitions.append(attempt(s, False))
        delays.append(s.due())
    assert transitions.count(Transition.UNREACHABLE) == 1 and transitions[1] is Transition.UNREACHABLE
    # within a round the next controller is tried at once; between rounds: 1, 2, 4, ... 30
    assert delays == [0, 1, 0, 2, 0, 4, 0, 8, 0, 16, 0, 30, 0, 30, 0, 30]
    assert s.unreachable and s.registered is None and s.attempts == 16
    assert attempt(s, True) is Transition.REGISTERED
    assert not s.unreachable and s.due() == DEFAULT_INTERVAL
    # a second outage is reported again, and backoff starts over
    assert [attempt(s, False), attempt(s, False)] == [Transition.NONE, Transition.UNREACHABLE]
    assert s.due() == 1


def test_one_controller_alone_is_unreachable_after_one_failure():
    s, _ = schedule("a:1")
    assert attempt(s, False) is Transition.UNREACHABLE
    assert s.due() == 1 and s.current == "a:1"
    assert attempt(s, False) is Transition.NONE and s.due() == 2


def test_jitter_only_shortens_the_wait():
    s, _ = schedule("a:1", rand=0.999, jitter=0.25)
    assert s.backoff(1) == pytest.approx(1 - 0.25 * 0.999)
    assert s.backoff(100) == pytest.approx(30 * (1 - 0.25 * 0.999))
    s, _ = schedule("a:1", rand=0.0)
    assert s.backoff(100) == 30


def test_hurry_sends_now_even_while_an_attempt_is_in_flight():
    s, clock = schedule("a:1")
    attempt(s, True, 5.0)
    s.hurry()
    assert s.due() == 0
    # the poke arrives while the (older) attempt is in flight: send another right after it
    s.started()
    s.hurry()
    s.succeeded(5.0)
    assert s.due() == 0
    attempt(s, True, 5.0)
    assert s.due() == 5.0
    clock.advance(1)
    assert s.due() == 4.0


def test_hurry_during_backoff_tries_once_then_backs_off_again():
    s, _ = schedule("a:1")
    attempt(s, False)
    attempt(s, False)
    assert s.due() == 2
    s.hurry()
    assert s.due() == 0
    attempt(s, False)
    assert s.due() == 4


def test_no_controllers_is_a_programming_error():
    with pytest.raises(ValueError):
        Schedule(())


def test_addresses_and_reasons_are_one_line():
    assert format_address("::1", 7) == "[::1]:7"
    assert format_address("", 7) == ":7"
    assert format_address("c1", 7) == "c1:7"
    assert describe_error(OSError("no\nroute")) == "no route"
    error = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                 details="failed to connect\n to all addresses")
    assert describe_error(error) == "UNAVAILABLE: failed to connect to all addresses"
    refused = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
        details="failed to connect to all addresses; last error: UNKNOWN: ipv6:%5B::1%5D:47125: "
                "Failed to connect to remote host: Connection refused")
    assert describe_error(refused) == "UNAVAILABLE: Failed to connect to remote host: Connection refused"
    deadline = grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata())
    assert describe_error(deadline) == "DEADLINE_EXCEEDED"


def load_text(tmp_path, text: str):
    path = tmp_path / "supervisord.conf"
    path.write_text("[supervisord]\n" + textwrap.dedent(text))
    return load(str(path))


def test_controllers_without_grpc_listen_is_refused_naming_section_and_option(tmp_path):
    with pytest.raises(ConfigError, match="controllers needs grpc_listen") as info:
        load_text(tmp_path, "[fleetvisor]\nnode=n1\ncontrollers=c1:7000\n")
    assert (info.value.section, info.value.option, info.value.line) == ("fleetvisor", "controllers", 4)
    assert "'fleetvisor'" in str(info.value) and "'controllers'" in str(info.value)


def test_controllers_with_grpc_listen_or_neither_is_fine(tmp_path):
    fv = load_text(tmp_path, "[fleetvisor]\ncontrollers=c1:7000\ngrpc_listen=:50051\n").fleetvisor
    assert fv.controllers == (("c1", 7000),) and fv.grpc_listen == ("", 50051)
    assert load_text(tmp_path, "[fleetvisor]\ngrpc_listen=127.0.0.1:50051\n").fleetvisor.controllers == ()


def test_a_controllers_own_answer_is_kept_whole():
    """A controller's words (it reached etcd and could not) are not shortened to the connection
    error they quote: that error is the controller's, to etcd, not the agent's."""
    details = ("etcd is unavailable at 127.0.0.1:2379: failed to connect to all addresses; last error: "
               "UNKNOWN: ipv4:127.0.0.1:2379: Failed to connect to remote host: Connection refused")
    answered = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                    grpc.aio.Metadata(("fleetvisor-controller", "ctl-1")), details=details)
    assert answered_by(answered) == "ctl-1"
    assert describe_error(answered) == f"UNAVAILABLE: {details}"
    transport = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                     details=details)
    assert answered_by(transport) == ""
    assert describe_error(transport) == "UNAVAILABLE: Failed to connect to remote host: Connection refused"


def test_a_fleet_starts_spread_over_its_controllers_each_node_always_at_the_same_one():
    names = [f"web-{i:04d}" for i in range(3000)]
    homes = [home(n, 3) for n in names]
    assert homes == [home(n, 3) for n in names]  # the same at every start
    assert all(900 <= homes.count(i) <= 1100 for i in range(3)), [homes.count(i) for i in range(3)]
    assert {home(n, 1) for n in names} == {0}
