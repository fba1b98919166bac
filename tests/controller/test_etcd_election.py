"""Election: one leader, prompt hand-over on resign, takeover after a crash, etcd restarts."""

from __future__ import annotations

import asyncio

from fleetvisor.controller.election import Election
from fleetvisor.controller.etcd import EtcdSettings, connect

from tests.support import eventually, run

from .etcd_harness import EtcdServer

KEY = "/fleetvisor/t/leader"
TTL = 1.0  # the harness's etcd (100 ms election timeout) grants 1 s leases
# A lease nobody waits out: what must happen "at once" has to happen well before it expires,
# so a generous deadline still tells a prompt hand-over from a wait for the expiry.
LONG_TTL = 30.0
# Renewals every STEP_TTL / 3: a leader cut off from etcd steps down within two of those, which
# leaves a third of the lease as slack for a loaded machine.
STEP_TTL = 3.0


async def _pair(etcd: EtcdServer, ttl: float = TTL):
    clients = [await connect(EtcdSettings([etcd.endpoint])) for _ in range(2)]
    elections = [Election(c, KEY, name, ttl) for c, name in zip(clients, (b"ctl-a", b"ctl-b"))]
    return clients, elections


async def _close(clients, elections) -> None:
    for election in elections:
        await election.close()
    for client in clients:
        await client.close()


def _one_leader(elections) -> bool:
    leaders = [e for e in elections if e.is_leader]
    return len(leaders) == 1 and all(e.leader == leaders[0].identity for e in elections)


def test_one_leads_and_resigning_hands_over_at_once(etcd: EtcdServer) -> None:
    async def body():
        clients, (a, b) = await _pair(etcd, LONG_TTL)
        seen: list[tuple[bool, bytes | None]] = []
        b.on_change(lambda is_leader, leader: seen.append((is_leader, leader)))
        try:
            await a.start()
            assert a.is_leader and a.leader == b"ctl-a" and a.revision
            await b.start()
            assert not b.is_leader and b.leader == b"ctl-a"
            assert (await clients[0].get(KEY.encode())).value == b"ctl-a"

            await a.close()  # resign: revoke the lease
            await eventually(lambda: b.is_leader, LONG_TTL / 2, "b to lead long before a's lease could expire")
            assert b.leader == b"ctl-b" and not a.is_leader
            assert seen == [(False, b"ctl-a"), (True, b"ctl-b")]
        finally:
            await _close(clients, (a, b))
    run(body())


def test_a_crashed_leader_is_replaced_after_its_lease_expires(etcd: EtcdServer) -> None:
    async def body():
        clients, (a, b) = await _pair(etcd)
        try:
            await a.start()
            await b.start()
            assert a.is_leader and not b.is_leader
            await a.close(resign=False)  # as if SIGKILLed: keepalives stop, the lease stays
            assert not b.is_leader  # nobody revoked anything: b must wait for the expiry
            closed = asyncio.get_running_loop().time()
            await eventually(lambda: b.is_leader, TTL + 10.0, "b to take over")
            # a lower bound, which a slow machine cannot break
            assert asyncio.get_running_loop().time() - closed > TTL / 3, \
                "b took over before a's lease could have expired"
            assert b.leader == b"ctl-b"
        finally:
            await _close(clients, (a, b))
    run(body())


def test_the_key_deleted_under_a_leader_means_a_new_campaign(etcd: EtcdServer) -> None:
    async def body():
        clients, elections = await _pair(etcd)
        try:
            for e in elections:
                await e.start()
            first = next(e for e in elections if e.is_leader)
            first_revision = first.revision
            await clients[0].delete(KEY.encode())
            await eventually(lambda: _one_leader(elections) and any(e.revision not in (None, first_revision)
                                                                    for e in elections), 3, "a new leader")
        finally:
            await _close(clients, elections)
    run(body())


def test_leader_steps_down_when_etcd_dies_and_election_resumes_after_restart(etcd: EtcdServer) -> None:
    async def body():
        clients, (a, b) = await _pair(etcd, STEP_TTL)
        try:
            await a.start()
            await b.start()
            assert a.is_leader
            etcd.kill()
            await eventually(lambda: not a.is_leader, STEP_TTL, "a to step down before its lease could expire")
            await asyncio.sleep(0.3)  # stay down for a few failed attempts
            etcd.start()
            await eventually(lambda: _one_leader((a, b)), 10, "one leader after the restart")
            leader = a if a.is_leader else b
            # and it holds: the leadership is renewed, not a flicker
            await asyncio.sleep(1.5 * STEP_TTL)
            assert leader.is_leader and _one_leader((a, b))
            assert (await clients[0].get(KEY.encode())).value == leader.identity
        finally:
            await _close(clients, (a, b))
    run(body())


def test_a_lone_controller_leads_again_after_a_graceful_etcd_restart(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        a = Election(client, KEY, b"solo", LONG_TTL)
        changes: list[bool] = []
        a.on_change(lambda is_leader, _: changes.append(is_leader))
        try:
            await a.start()
            await asyncio.sleep(0.5)  # its keepalive and watch streams are open: the restart cuts them
            etcd.restart()
            # its old lease survives the restart (etcd even extends it); re-campaigning must
            # not wait for it to expire: the stale lease is revoked first
            await eventually(lambda: a.is_leader and changes.count(True) == 2, LONG_TTL / 2,
                             "a to lead again long before its old lease could expire")
            assert changes == [True, False, True]
        finally:
            await a.close()
            await client.close()
    run(body())
