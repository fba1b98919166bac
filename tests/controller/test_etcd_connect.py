"""connect(): endpoint order, one-line errors, TLS with client certificates, token renewal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleetvisor.cli.certs import issue, make_ca
from fleetvisor.controller.etcd import EtcdError, EtcdSettings, connect, connect_waiting
from fleetvisor.controller.mirror import Mirror

from tests.support import eventually, free_port, run

from .etcd_harness import EtcdServer, ServerTLS


def test_connect_reads_and_writes(etcd: EtcdServer) -> None:
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        try:
            await client.put(b"/t/k", b"v")
            assert (await client.get(b"/t/k")).value == b"v"
            assert client.endpoint == etcd.endpoint
        finally:
            await client.close()
    run(body())


def test_connect_skips_dead_endpoints_in_order(etcd: EtcdServer) -> None:
    dead = f"127.0.0.1:{free_port()}"

    async def body():
        client = await connect(EtcdSettings([dead, etcd.endpoint], timeout=2))
        try:
            assert client.endpoint == etcd.endpoint
        finally:
            await client.close()
    run(body())


def test_connect_error_names_every_endpoint_on_one_line() -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with pytest.raises(EtcdError) as info:
        # refused connections fail fast: the attempt ends long before the 60 s timeout
        run(connect(EtcdSettings(dead, timeout=60)), timeout=30)
    message = str(info.value)
    assert all(endpoint in message for endpoint in dead)
    assert message.startswith("cannot reach etcd at ")
    assert "\n" not in message and "Traceback" not in message


def test_a_controller_starting_before_its_etcd_waits_for_it(tmp_path: Path) -> None:
    """Units started together, or a loaded host: etcd answers a little after the controller asks."""
    late = EtcdServer(tmp_path / "late")

    async def body():
        told = asyncio.Event()
        lines: list[str] = []

        def waiting(line: str) -> None:
            lines.append(line)
            told.set()
        task = asyncio.create_task(connect_waiting(EtcdSettings([late.endpoint], timeout=2), 60, waiting))
        await asyncio.wait_for(told.wait(), 30)
        await asyncio.to_thread(late.start)
        client = await asyncio.wait_for(task, 60)
        try:
            assert client.endpoint == late.endpoint
        finally:
            await client.close()
        assert len(lines) == 1 and lines[0].startswith(f"cannot reach etcd at {late.endpoint}")
        assert "trying again for up to 60 s" in lines[0]
    try:
        run(body(), timeout=90)
    finally:
        late.stop()


def test_waiting_gives_up_at_its_deadline_and_never_waits_out_a_refusal(etcd: EtcdServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    lines: list[str] = []
    with pytest.raises(EtcdError, match=dead) as info:
        run(connect_waiting(EtcdSettings([dead], timeout=1), 2, lines.append), timeout=30)
    assert info.value.unreachable and len(lines) == 1
    etcd.enable_auth("pw")
    lines.clear()
    with pytest.raises(EtcdError, match="authentication failed") as info:
        run(connect_waiting(EtcdSettings([etcd.endpoint], user="root", password="wrong", timeout=2), 60,
                            lines.append), timeout=20)
    assert not info.value.unreachable and not lines


def test_connect_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(EtcdError, match="bad etcd endpoint"):
        run(connect(EtcdSettings(["nohostport"])))
    with pytest.raises(EtcdError, match="cannot read etcd CA file"):
        run(connect(EtcdSettings(["127.0.0.1:1"], ca=tmp_path / "missing.pem")))
    with pytest.raises(EtcdError, match="together"):
        run(connect(EtcdSettings(["127.0.0.1:1"], ca=tmp_path / "ca.pem", cert=tmp_path / "c.pem")))


@pytest.fixture
def tls_etcd(tmp_path: Path):
    pki = tmp_path / "pki"
    ca, _ = make_ca(pki)
    cert, key = issue(pki, "etcd", ["127.0.0.1"])
    server = EtcdServer(tmp_path / "server", tls=ServerTLS(ca=ca, cert=cert, key=key, client_auth=True))
    server.start()
    try:
        yield server, pki
    finally:
        server.kill()


def test_connect_over_tls_with_client_certificate(tls_etcd) -> None:
    server, pki = tls_etcd
    cert, key = issue(pki, "controller", [], client_only=True)

    async def body():
        client = await connect(EtcdSettings([server.endpoint], ca=pki / "ca.pem", cert=cert, key=key))
        try:
            await client.put(b"/t/tls", b"secret")
            assert (await client.get(b"/t/tls")).value == b"secret"
        finally:
            await client.close()
    run(body())


def test_tls_etcd_refuses_plaintext_and_missing_client_cert(tls_etcd) -> None:
    server, pki = tls_etcd
    with pytest.raises(EtcdError, match=server.endpoint) as info:
        run(connect(EtcdSettings([server.endpoint], timeout=2)))
    assert "TLS" in str(info.value)  # a hint, not just gRPC's "Socket closed"
    with pytest.raises(EtcdError, match=server.endpoint) as info:
        run(connect(EtcdSettings([server.endpoint], ca=pki / "ca.pem", timeout=2)))
    assert "client certificate" in str(info.value)


def test_tls_rejects_a_server_from_another_ca(tls_etcd, tmp_path: Path) -> None:
    server, pki = tls_etcd
    other_ca, _ = make_ca(tmp_path / "other")
    cert, key = issue(pki, "controller", [], client_only=True)
    with pytest.raises(EtcdError, match=server.endpoint) as info:
        run(connect(EtcdSettings([server.endpoint], ca=other_ca, cert=cert, key=key, timeout=2)))
    assert "not signed by the given CA" in str(info.value)


def test_auth_token_is_renewed_after_etcd_restart(etcd: EtcdServer) -> None:
    """etcd forgets its simple tokens on restart; unary calls and watches must carry on."""
    etcd.enable_auth("pw")
    with pytest.raises(EtcdError, match="authentication failed"):
        run(connect(EtcdSettings([etcd.endpoint], user="root", password="wrong", timeout=2)))

    async def body():
        client = await connect(EtcdSettings([etcd.endpoint], user="root", password="pw"))
        mirror = Mirror(client, "/auth/")
        try:
            await mirror.start()
            await client.put(b"/auth/a", b"1")
            etcd.restart()
            put = await client.put(b"/auth/b", b"2")  # stale token: renewed and retried once
            await mirror.wait_revision(put.header.revision, timeout=15)
            assert mirror.items() == {"a": b"1", "b": b"2"}
            assert mirror.reloads == 0  # the watch itself resumed, with a renewed token
            await eventually(lambda: mirror.connected, 5, "the mirror's watch to be back")
        finally:
            await mirror.close()
            await client.close()
    run(body())


def test_refresh_lease_renews_and_leaves_nothing_running(etcd: EtcdServer) -> None:
    """One renewal per call on a stream of its own, closed before it returns: no task or call
    is left for the garbage collector (and a revoked lease answers TTL 0)."""
    async def body():
        client = await connect(EtcdSettings([etcd.endpoint]))
        try:
            lease = await client.lease(10)
            reply = await client.refresh_lease(lease.id)
            assert reply is not None and reply.ID == lease.id and 0 < reply.TTL <= 10
            await client.revoke_lease(lease.id)
            assert (await client.refresh_lease(lease.id)).TTL <= 0
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert not others, others
        finally:
            await client.close()
    run(body())
