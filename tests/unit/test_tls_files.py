"""TlsMaterial takes rotated certificate files only as a whole, checked set, and keeps the
previous set (saying why, once per change) when the new files are not usable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleetvisor.agent.security.identity import Identity, from_pem
from fleetvisor.agent.security.tlsfiles import TlsFileError, TlsFiles, TlsMaterial
from fleetvisor.cli.certs import issue, make_ca


def serial_of(path: Path) -> str:
    return from_pem(path.read_bytes()).serial


def only_web_1(own: Identity) -> str | None:
    return None if own.role == "agent" and own.name == "web-1" else "not agent web-1"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    make_ca(tmp_path)
    for name in ("web-1", "web-2"):
        issue(tmp_path, name, ["127.0.0.1"], role="agent", cluster="test")
    return tmp_path


@pytest.fixture
def material(pki: Path) -> tuple[TlsMaterial, list[str]]:
    lines: list[str] = []
    files = TlsFiles(str(pki / "web-1.pem"), str(pki / "web-1.key"), str(pki / "ca.pem"))
    return TlsMaterial(files, only_web_1, lambda line, trouble: lines.append(("! " if trouble else "") + line)), lines


def test_unchanged_files_are_not_read_again(material):
    tls, lines = material
    assert not tls.refresh() and tls.generation == 0 and not lines


def test_a_rotated_certificate_is_taken(pki, material):
    tls, lines = material
    issue(pki, "web-1", ["127.0.0.1"], role="agent", cluster="test", force=True)
    assert tls.refresh() and tls.generation == 1
    assert tls.current.identity.serial == serial_of(pki / "web-1.pem")
    assert lines == [f"TLS certificate reloaded: agent web-1, serial {serial_of(pki / 'web-1.pem')}"]


@pytest.mark.parametrize("break_it, reason", [
    (lambda pki: shutil.copy(pki / "web-2.key", pki / "web-1.key"), "is not the key of the certificate"),
    (lambda pki: (pki / "web-1.key").unlink(), "cannot read the key"),
    (lambda pki: (pki / "ca.pem").write_text("not pem"), "is not a PEM certificate bundle"),
    (lambda pki: (pki / "web-1.pem").write_text(""), "is not a PEM certificate"),
    (lambda pki: [shutil.copy(pki / f"web-2.{x}", pki / f"web-1.{x}") for x in ("pem", "key")],
     "is for agent web-2: not agent web-1"),
])
def test_a_bad_set_keeps_the_current_one_and_says_why_once(pki, material, break_it, reason):
    tls, lines = material
    before = tls.current
    break_it(pki)
    assert not tls.refresh() and not tls.refresh()
    assert tls.current is before and tls.generation == 0
    assert len(lines) == 1 and lines[0].startswith("! keeping the current TLS certificate")
    assert reason in lines[0] and before.identity.serial in lines[0]


def test_a_bad_set_at_startup_is_an_error(pki):
    files = TlsFiles(str(pki / "web-2.pem"), str(pki / "web-2.key"), str(pki / "ca.pem"))
    with pytest.raises(TlsFileError, match="is for agent web-2: not agent web-1"):
        TlsMaterial(files, only_web_1, lambda line, trouble: None)


def test_a_ca_bundle_with_two_cas(pki, material, tmp_path_factory):
    tls, _ = material
    other = tmp_path_factory.mktemp("new-ca")
    make_ca(other, "new CA")
    (pki / "ca.pem").write_bytes((pki / "ca.pem").read_bytes() + (other / "ca.pem").read_bytes())
    assert tls.refresh() and tls.current.ca == (pki / "ca.pem").read_bytes()
