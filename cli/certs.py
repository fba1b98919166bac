"""`fleetctl certs`: a private CA and the certificates for mutual TLS between the parts.

    fleetctl certs init --dir pki                                  # pki/ca.pem, pki/ca.key
    fleetctl certs issue --role agent --node web-1 --host 10.0.0.5 --dir pki
    fleetctl certs issue --role operator --user alice --group admins --dir pki

Agent and controller certificates serve and dial; people's only dial. Keys are EC P-256
and written with mode 0600. Nothing is overwritten without --force.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rich.text import Text

from fleetvisor.agent.security.identity import DEFAULT_CLUSTER, ROLES, IdentityError, check_name, san_uris

from . import render
from .client import CommandError
from .context import Ctx

CA_DAYS = 3650
PEOPLE = ("operator", "viewer")
SERVERS = ("agent", "controller")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetvisor"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int) -> None:
    """A new file (one being replaced is removed first): never through a symlink planted there."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def make_ca(directory: Path, common_name: str = "fleetvisor CA") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(directory / "ca.key", key)
    _write_cert(directory / "ca.pem", cert)
    return directory / "ca.pem", directory / "ca.key"


def _refuse_existing(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if existing and not force:
        raise CommandError(f"{', '.join(existing)} already exists; use --force to replace it", 2)


def issue(directory: Path, name: str, hosts: list[str], *, role: str | None = None, groups: Sequence[str] = (),
          cluster: str = DEFAULT_CLUSTER, client_only: bool | None = None, days: int = 825,
          force: bool = False) -> tuple[Path, Path]:
    """Write NAME.pem and NAME.key into `directory`, signed by its CA.

    With a fleetvisor `role` the certificate carries the role, name and groups as SAN URIs
    (identity.py); without one it is a plain TLS certificate, as etcd's own PKI needs, that
    agents and controllers refuse. Agents and controllers serve and dial; people only dial.
    Raises CommandError for a name that is not plain, a file that exists (unless `force`) or
    a missing CA."""
    try:
        uris = san_uris(cluster, role, name, list(groups)) if role else []
        check_name("certificate", name)
    except IdentityError as exc:
        raise CommandError(str(exc), 2) from None
    if name == "ca":
        raise CommandError("'ca' is the CA's own file name; choose another name", 2)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    _refuse_existing([cert_path, key_path], force)
    try:
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise CommandError(f"no usable CA in {directory} (run `fleetctl certs init --dir {directory}`): {exc}",
                           2) from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):  # what signs with SHA-256
        raise CommandError(f"CA key {directory / 'ca.key'} is neither EC nor RSA", 2)
    if client_only is None:
        client_only = role in PEOPLE
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    sans += [x509.UniformResourceIdentifier(uri) for uri in uris]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_only else [ExtendedKeyUsageOID.SERVER_AUTH,
                                                                    ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


@click.group()
def certs() -> None:
    """Make a private CA and certificates for mutual TLS (offline); revoke them (with the controller)."""


@certs.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--force", is_flag=True, help="Replace an existing CA (every issued certificate stops working).")
def certs_init(directory: Path, force: bool) -> None:
    """Create ca.pem and ca.key in DIR."""
    if (directory / "ca.key").exists() and not force:
        raise click.ClickException(f"{directory}/ca.key exists; use --force to replace the CA")
    cert, key = make_ca(directory)
    _show(cert, key, f"CA certificate {cert}\nCA key         {key} (keep it off the nodes)")


@certs.command("issue")
@click.option("--role", type=click.Choice(ROLES), help="What the holder is: agent and controller name a --node, "
              "operator and viewer a --user. Without a role: a plain TLS certificate (for etcd's own PKI), "
              "which agents and controllers refuse.")
@click.option("--node", "node", metavar="NAME", help="The node (agent) or controller name; serves and dials.")
@click.option("--user", "user", metavar="NAME", help="A person (operator or viewer), for fleetctl.")
@click.option("--group", "groups", metavar="G", multiple=True, help="A group of the person (repeatable); "
              "operators in group admins may do everything.")
@click.option("--client", "client", metavar="NAME", help="A plain client-only certificate (etcd clients).")
@click.option("--cluster", default=DEFAULT_CLUSTER, show_default=True, help="The controller's --cluster.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--host", "hosts", multiple=True, help="Extra DNS name or IP address (repeatable).")
@click.option("--force", is_flag=True, help="Replace NAME.pem and NAME.key if they exist.")
def certs_issue(role: str | None, node: str | None, user: str | None, groups: tuple[str, ...], client: str | None,
                cluster: str, directory: Path, hosts: tuple[str, ...], force: bool) -> None:
    """Issue NAME.pem and NAME.key in DIR, signed by its CA."""
    given = [n for n in (node, user, client) if n]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --node NAME, --user NAME or --client NAME")
    if (role in PEOPLE and not user) or (role in SERVERS and not node):
        raise click.UsageError(f"--role {role} needs {'--user' if role in PEOPLE else '--node'} NAME")
    if user and role not in PEOPLE:
        raise click.UsageError("--user is for --role operator or --role viewer")
    if client and role:
        raise click.UsageError("--client makes a plain certificate; use --user NAME with --role")
    if groups and role not in PEOPLE:
        raise click.UsageError("--group is for people: --role operator or --role viewer")
    try:
        cert, key = issue(directory, given[0], list(hosts), role=role, groups=groups, cluster=cluster,
                          client_only=bool(client) or None, force=force)
    except CommandError as exc:
        raise click.ClickException(str(exc)) from None
    what = f"{role} {given[0]}" if role else "plain TLS (no fleetvisor role)"
    _show(cert, key, f"certificate {cert} ({what})\nkey         {key}")


def _show(cert: Path, key: Path, text: str) -> None:
    obj = click.get_current_context().find_object(Ctx)  # none when the group is run on its own
    render.show(bool(obj and obj.json), {"certificate": str(cert), "key": str(key)}, lambda: Text(text))
