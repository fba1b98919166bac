"""EmbeddedEtcd: a private etcd that keeps its data, reports failures, and dies with us."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetvisor.controller.embedded import NOT_FOUND, EmbeddedEtcd
from fleetvisor.controller.etcd import EtcdError, EtcdSettings, connect_waiting

from tests.support import eventually, pid_alive, run, wait_for

from .etcd_harness import ETCD


def test_embedded_keeps_data_across_restarts(tmp_path: Path) -> None:
    async def body():
        etcd = EmbeddedEtcd(tmp_path / "state", binary=ETCD)
        try:
            endpoint = await etcd.start()
            assert endpoint.startswith("127.0.0.1:") and etcd.running
            client = await connect_waiting(EtcdSettings([endpoint]), 30, lambda _line: None)
            await client.put(b"/keep", b"me")
            await client.close()
            pid = etcd.pid
            await etcd.stop()
            assert not etcd.running and not pid_alive(pid)

            endpoint = await etcd.start()
            client = await connect_waiting(EtcdSettings([endpoint]), 30, lambda _line: None)
            assert (await client.get(b"/keep")).value == b"me"
            await client.close()
        finally:
            await etcd.stop()
        assert "fleetvisor-embedded" in (tmp_path / "state" / "etcd.log").read_text()
    run(body())


def test_embedded_missing_binary_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EtcdError) as info:
        run(EmbeddedEtcd(tmp_path, binary="no-such-etcd-binary").start())
    assert str(info.value) == NOT_FOUND


def test_embedded_reports_an_etcd_that_exits(tmp_path: Path) -> None:
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\necho 'etcdmain: listen tcp: something went wrong' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(EtcdError) as info:
        run(EmbeddedEtcd(tmp_path / "state", binary=str(fake)).start())
    message = str(info.value)
    assert "exited with status 3" in message and "something went wrong" in message
    assert "\n" not in message


CHILD = """
import asyncio, sys
from pathlib import Path
from fleetvisor.controller.embedded import EmbeddedEtcd

async def main():
    etcd = EmbeddedEtcd(Path(sys.argv[1]), binary=sys.argv[2])
    await etcd.start()
    print(etcd.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_embedded_etcd_dies_when_the_controller_is_killed(tmp_path: Path) -> None:
    controller = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "state"), ETCD],
                                  stdout=subprocess.PIPE, text=True)
    etcd_pid = None
    try:
        line = controller.stdout.readline()
        assert line.strip().isdigit(), f"controller did not start etcd: {line!r}"
        etcd_pid = int(line)
        assert pid_alive(etcd_pid)
        controller.send_signal(signal.SIGKILL)
        controller.wait(5)
        wait_for(lambda: not pid_alive(etcd_pid), 10, "etcd to die with its SIGKILLed controller")
    finally:
        controller.kill()
        controller.wait()
        if etcd_pid and pid_alive(etcd_pid):
            os.kill(etcd_pid, signal.SIGKILL)


def test_embedded_etcd_that_keeps_dying_is_restarted_then_given_up(tmp_path: Path) -> None:
    """Each death is restarted on the same endpoint; one that dies again soon after each
    restart counts towards one streak, and the streak's end is an EtcdError in one line."""
    async def body():
        etcd = EmbeddedEtcd(tmp_path / "state", binary=ETCD, restart_attempts=3)
        supervised = None
        try:
            endpoint = await etcd.start()
            supervised = asyncio.ensure_future(etcd.supervise())
            for restarts in range(1, 4):
                pid = etcd.pid
                os.kill(pid, signal.SIGKILL)
                await eventually(lambda: etcd.restarts == restarts and etcd.running, 20,  # noqa: B023
                                 f"restart {restarts}")
                assert etcd.pid != pid and etcd.endpoint == endpoint
                # a loaded host may take a while to answer a just-restarted etcd's first call
                client = await connect_waiting(EtcdSettings([endpoint]), 30, lambda _line: None)
                await client.put(b"/alive", str(restarts).encode())
                await client.close()
            os.kill(etcd.pid, signal.SIGKILL)
            with pytest.raises(EtcdError) as info:
                await asyncio.wait_for(supervised, 20)
            message = str(info.value)
            assert "exited with signal SIGKILL and could not be restarted" in message
            assert "it died again within 30s of each restart" in message
            assert "exiting so that the service manager restarts the controller" in message and "\n" not in message
        finally:
            if supervised is not None:
                supervised.cancel()
            await etcd.stop()
    run(body(), timeout=90)
