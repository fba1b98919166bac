"""deploy/TLS.md's fleetctl commands, run as written: the certificates it makes, then its
policy and revocation commands against a real controller of its cluster, as the admin it
makes (alice). Placeholders (`...`) are left out; the outcome is read back from the fleet."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

from fleetvisor.agent.security.identity import from_pem
from fleetvisor.cli.certs import issue

from .fleet_harness import FLEETCTL
from .test_fleet_tls import ENV, tls_flags

TLS_MD = Path(__file__).resolve().parents[2] / "deploy" / "TLS.md"


def documented_commands() -> list[list[str]]:
    """Every `fleetctl` line of the shell blocks, continuations joined, comments dropped."""
    text = TLS_MD.read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["fleetctl"] and "..." not in line:
                commands.append(words)
    return commands


def test_tls_md_commands_run_as_written(fleet, tmp_path: Path) -> None:
    commands = documented_commands()
    making = [c for c in commands if c[1] == "certs" and c[2] in ("init", "issue")]
    fleet_side = [c for c in commands if c[1] == "acl" or c[1:3] in (["certs", "revoke"], ["certs", "revoked"])]
    assert making and fleet_side, "TLS.md lost its examples"

    def run(words: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        result = subprocess.run([*FLEETCTL, *words[1:]], cwd=tmp_path, capture_output=True, text=True,
                                timeout=30, env=env)
        assert result.returncode == 0, f"{shlex.join(words)}:\n{result.stdout}{result.stderr}"
        return result

    for words in making:
        run(words, ENV)
    pki = tmp_path / "pki"
    # TLS.md's controller certificates name its example addresses; this one is for loopback.
    issue(pki, "ctl-here", ["127.0.0.1"], role="controller", cluster="prod")
    ctl = fleet.controller("ctl-1", extra=("--cluster", "prod", *tls_flags(pki, "ctl-here")))
    as_alice = {**ENV, "FLEETCTL_CONTROLLER": ctl.address, "FLEETCTL_TLS_CERT": str(pki / "alice.pem"),
                "FLEETCTL_TLS_KEY": str(pki / "alice.key"), "FLEETCTL_TLS_CA": str(pki / "ca.pem")}
    for words in fleet_side:
        run(words, as_alice)

    policies = json.loads(run(["fleetctl", "-o", "json", "acl", "list"], as_alice).stdout)
    assert sorted(p["name"] for p in policies["policies"]) == ["auditors", "web-deployers"]
    revoked = json.loads(run(["fleetctl", "-o", "json", "certs", "revoked"], as_alice).stdout)
    serial = from_pem((pki / "web-1.pem").read_bytes()).serial
    assert [r["serial"] for r in revoked["revoked"]] == [serial]
    assert os.stat(pki / "ca.key").st_mode & 0o077 == 0
