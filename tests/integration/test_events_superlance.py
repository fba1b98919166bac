"""Stock superlance listeners run unchanged under the agent (and, as the judge, under stock).

crashmail needs nothing but the listener protocol; its mail goes to a fake sendmail that
writes to a file. memmon also calls the daemon back over XML-RPC on its unix socket.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support import wait_for

from .events_helpers import conf
from .harness import AGENT, SUPERVISORD

CRASHMAIL = Path(sys.executable).parent / "crashmail"


@pytest.mark.parametrize("command", [AGENT, SUPERVISORD], ids=["agent", "stock"])
def test_crashmail_mails_an_unexpected_exit(tmp_path, daemons, command):
    mailbox = tmp_path / "mailbox"
    sendmail = tmp_path / "sendmail.sh"
    sendmail.write_text(f"#!/bin/sh\ncat >> {mailbox}\n")
    sendmail.chmod(0o755)
    config = conf(tmp_path, f"""
        [eventlistener:crashmail]
        command={CRASHMAIL} -a -m ops@example.com -s {sendmail}
        events=PROCESS_STATE_EXITED
        ; crashmail refuses to run outside supervisord; it makes no XML-RPC call itself
        environment=SUPERVISOR_SERVER_URL="unix://%(here)s/unused.sock"

        [program:fine]
        command=/bin/sh -c "sleep 1.2; exit 0"
        autorestart=false

        [program:crashy]
        command=/bin/sh -c "sleep 1.2; exit 2"
        autorestart=false
    """)
    d = daemons(config, command)
    pid = d.pid_of("crashy")
    mail = wait_for(lambda: mailbox.exists() and mailbox.read_text(), 15, "a mail")
    assert mail.startswith("To: ops@example.com\nSubject:  crashy crashed at ")
    assert mail.endswith(f"\n\nProcess crashy in group crashy exited unexpectedly (pid {pid}) from state RUNNING")
    d.wait_line(r"exited: fine \(exit status 0; expected\)")
    # the expected exit of `fine` was acknowledged without a mail
    wait_for(lambda: re.search(r"unexpected exit, mailing", next(tmp_path.glob("crashmail-stderr---*.log")).read_text()),
             5, "crashmail's own note")
    assert mailbox.read_text().count("To: ") == 1


MEMMON = Path(sys.executable).parent / "memmon"


@pytest.mark.parametrize("command", [AGENT, SUPERVISORD], ids=["agent", "stock"])
def test_memmon_restarts_a_program_over_its_limit(tmp_path, daemons, command):
    """memmon on TICK_5 reads RSS through getAllProcessInfo and restarts over XML-RPC."""
    config = conf(tmp_path, f"""
        [unix_http_server]
        file=%(here)s/sv.sock

        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

        [eventlistener:memmon]
        command={MEMMON} -p hog=10MB
        events=TICK_5
        startsecs=0

        [program:hog]
        command={sys.executable} -c "x = bytearray(64 << 20); x[::4096] = bytes(len(x[::4096])); import time; time.sleep(1000)"
        startsecs=0
    """)
    d = daemons(config, command)
    first = d.pid_of("hog")
    d.wait_line(rf"stopped: hog \(terminated by SIGTERM\)", timeout=15)
    second = int(d.wait_line(r"spawned: 'hog' with pid (\d+)", count=2)[-1].group(1))
    assert second != first
    log = next(tmp_path.glob("memmon-stderr---*.log"))
    wait_for(lambda: "Restarting hog:hog" in log.read_text(), 5, "memmon's note")
