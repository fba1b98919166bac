"""Issue 15 item 6: a client certificate past its dates. The server hangs up in the TLS
handshake and gRPC tells the client only "Socket closed"; fleetctl checks its own
certificate and names the expiry instead of blaming the CA. A real handshake, in process."""

from __future__ import annotations

import datetime
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetvisor.cli.client import describe_rpc_error
from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki():
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(NOW - 10 * DAY).not_valid_after(NOW + 10 * DAY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: str, before: datetime.datetime, after: datetime.datetime):
        key = _key()
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(before).not_valid_after(after)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return key, cert
    return ca, leaf


def handshake_error(pki, client_key, client_cert) -> grpc.RpcError:
    ca, leaf = pki
    server_key, server_cert = leaf("localhost", NOW - DAY, NOW + DAY)
    server = grpc.server(ThreadPoolExecutor(2))
    pb_grpc.add_AgentServiceServicer_to_server(pb_grpc.AgentServiceServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(_pem_key(server_key), _pem(server_cert))], root_certificates=_pem(ca), require_client_auth=True))
    server.start()
    try:
        creds = grpc.ssl_channel_credentials(_pem(ca), _pem_key(client_key), _pem(client_cert))
        with grpc.secure_channel(f"127.0.0.1:{port}", creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.AgentServiceStub(channel).GetInfo(pb.GetInfoRequest(), timeout=10)
            return info.value
    finally:
        server.stop(0)


@pytest.mark.parametrize("before, after, words", [
    (NOW - 5 * DAY, NOW - DAY, "expired on"),
    (NOW + DAY, NOW + 5 * DAY, "is not valid before"),
])
def test_a_certificate_out_of_its_dates_is_named(pki, tmp_path, before, after, words):
    key, cert = pki[1]("operator", before, after)
    path = tmp_path / "operator.pem"
    path.write_bytes(_pem(cert))
    exc = handshake_error(pki, key, cert)
    message = str(describe_rpc_error(exc, "127.0.0.1:1", "controller", tls=True, cert=str(path)))
    assert "TLS handshake" in message and f"certificate {path} {words}" in message, message
    assert "signed by its CA" not in message and "\n" not in message


def test_a_valid_certificate_from_another_ca_still_points_at_the_ca(pki, tmp_path):
    ca_key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue")])
    key = _key()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(2).not_valid_before(NOW - DAY).not_valid_after(NOW + DAY).sign(ca_key, hashes.SHA256()))
    path = tmp_path / "rogue.pem"
    path.write_bytes(_pem(cert))
    message = str(describe_rpc_error(handshake_error(pki, key, cert), "127.0.0.1:1", "controller",
                                     tls=True, cert=str(path)))
    assert "signed by its CA" in message and "expired" not in message, message
