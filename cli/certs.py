"""`fleetctl certs`: a private CA and the certificates for mutual TLS between the parts.

    fleetctl certs init --dir pki                      # pki/ca.pem, pki/ca.key
    fleetctl certs issue --node web-1 --dir pki --host 10.0.0.5 --host web-1.example
    fleetctl certs issue --client admin --dir pki      # for fleetctl

A --node certificate can serve and authenticate as a client (agents, controllers);
keys are EC P-256 and written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rich.text import Text

from . import render
from .client import CommandError
from .context import Ctx

CA_DAYS = 3650


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetvisor"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


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


def issue(directory: Path, name: str, hosts: list[str], *, client_only: bool = False,
          days: int = 825) -> tuple[Path, Path]:
    try:
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise CommandError(f"no usable CA in {directory} (run `fleetctl certs init --dir {directory}`): {exc}",
                           2) from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):  # what signs with SHA-256
        raise CommandError(f"CA key {directory / 'ca.key'} is neither EC nor RSA", 2)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
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
    _write_key(directory / f"{name}.key", key)
    _write_cert(directory / f"{name}.pem", cert)
    return directory / f"{name}.pem", directory / f"{name}.key"


@click.group()
def certs() -> None:
    """Make a private CA and certificates for mutual TLS."""


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
@click.option("--node", "node", metavar="NAME", help="A certificate for an agent or controller (serves and dials).")
@click.option("--client", "client", metavar="NAME", help="A client-only certificate, e.g. for fleetctl.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--host", "hosts", multiple=True, help="Extra DNS name or IP address (repeatable).")
def certs_issue(node: str | None, client: str | None, directory: Path, hosts: tuple[str, ...]) -> None:
    """Issue NAME.pem and NAME.key in DIR, signed by its CA."""
    if bool(node) == bool(client):
        raise click.UsageError("give exactly one of --node NAME or --client NAME")
    name = node or client
    assert name is not None  # exactly one was given
    try:
        cert, key = issue(directory, name, list(hosts), client_only=bool(client))
    except CommandError as exc:
        raise click.ClickException(str(exc)) from None
    _show(cert, key, f"certificate {cert}\nkey         {key}")


def _show(cert: Path, key: Path, text: str) -> None:
    obj = click.get_current_context().find_object(Ctx)  # none when the group is run on its own
    render.show(bool(obj and obj.json), {"certificate": str(cert), "key": str(key)}, lambda: Text(text))
