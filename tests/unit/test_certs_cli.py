"""`fleetctl certs`: roles in certificates, nothing overwritten or written outside --dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetvisor.agent.security.identity import Identity, from_pem
from fleetvisor.cli.certs import certs


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    assert CliRunner().invoke(certs, ["init", "--dir", str(directory)]).exit_code == 0
    return directory


def _issue(pki: Path, *argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(certs, ["issue", "--dir", str(pki), *argv])
    return result.exit_code, result.output


def test_roles_and_groups_are_in_the_certificate(pki: Path) -> None:
    assert _issue(pki, "--role", "operator", "--user", "alice", "--group", "admins", "--cluster", "prod")[0] == 0
    assert from_pem((pki / "alice.pem").read_bytes()) == Identity(
        "operator", "alice", frozenset({"admins"}), "prod", from_pem((pki / "alice.pem").read_bytes()).serial)
    assert _issue(pki, "--role", "agent", "--node", "web-1", "--host", "127.0.0.1")[0] == 0
    agent = from_pem((pki / "web-1.pem").read_bytes())
    assert (agent.role, agent.name, agent.cluster) == ("agent", "web-1", "default")


def test_the_ca_key_is_never_overwritten(pki: Path) -> None:
    before = (pki / "ca.key").read_bytes()
    code, output = _issue(pki, "--role", "agent", "--node", "ca")
    assert code != 0 and "CA's own file name" in output
    assert (pki / "ca.key").read_bytes() == before


def test_nothing_is_written_outside_dir(pki: Path, tmp_path: Path) -> None:
    for flags in (["--role", "operator", "--user", "../x"], ["--client", "../x"], ["--role", "agent", "--node", "/tmp/x"],
                  ["--role", "operator", "--user", "a", "--group", "../g"]):
        code, output = _issue(pki, *flags)
        assert code != 0 and "not plain" in output, output
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["ca.key", "ca.pem"]


def test_existing_files_need_force(pki: Path) -> None:
    assert _issue(pki, "--role", "agent", "--node", "web-1")[0] == 0
    first = (pki / "web-1.pem").read_bytes()
    code, output = _issue(pki, "--role", "agent", "--node", "web-1")
    assert code != 0 and "already exists; use --force" in output
    assert (pki / "web-1.pem").read_bytes() == first
    assert _issue(pki, "--role", "agent", "--node", "web-1", "--force")[0] == 0
    assert (pki / "web-1.pem").read_bytes() != first
    assert oct((pki / "web-1.key").stat().st_mode & 0o777) == "0o600"


def test_a_symlink_in_place_of_the_key_is_not_followed(pki: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    (pki / "web-2.key").symlink_to(target)
    assert _issue(pki, "--role", "agent", "--node", "web-2", "--force")[0] == 0
    assert target.read_text() == "keep me"
    assert not (pki / "web-2.key").is_symlink()


@pytest.mark.parametrize("flags,message", [
    (["--role", "viewer", "--node", "x"], "needs --user"),
    (["--role", "agent", "--user", "x"], "needs --node"),
    (["--role", "agent", "--node", "x", "--group", "g"], "--group is for people"),
    (["--node", "x", "--user", "y"], "exactly one"),
])
def test_usage_errors(pki: Path, flags: list[str], message: str) -> None:
    code, output = _issue(pki, *flags)
    assert code == 2 and message in output
