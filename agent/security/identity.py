"""Identities carried in certificates.

`fleetctl certs issue` writes the role and name of a certificate's holder as a SAN URI,
`fleetvisor://CLUSTER/ROLE/NAME`, and each group of a person as `fleetvisor://CLUSTER/group/G`.
Agents and controllers read them from the peer certificate that TLS has already verified
against the fleet's CA, never from a request field. A certificate without exactly one role
URI is refused, so certificates issued before roles existed stop working instead of being
trusted as anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # the config parser checks names without loading cryptography
    from cryptography import x509

SCHEME = "fleetvisor"
ROLES = ("agent", "controller", "operator", "viewer")
GROUP = "group"
LOCAL_ROLE = "local"        # plaintext on loopback: whoever can reach this host's loopback
INSECURE_ROLE = "insecure"  # plaintext off loopback, explicitly allowed with insecure = true
NAME_MAX = 63
DEFAULT_CLUSTER = "default"
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class IdentityError(ValueError):
    """A certificate or name that cannot identify anyone; the message says how to fix it."""


def check_name(what: str, text: str) -> str:
    """A node, user, group or cluster name: letters, digits, '.', '_' and '-', starting with a
    letter or digit, at most 63 characters. These end up in etcd keys, URIs, file names and
    namespecs, where '/', ':', '..' or a control character would mean something else."""
    if not text:
        raise IdentityError(f"a {what} name may not be empty")
    if len(text) > NAME_MAX:
        raise IdentityError(f"{what} name {text[:NAME_MAX]!r}... is longer than {NAME_MAX} characters")
    if not _PLAIN.fullmatch(text) or ".." in text:
        raise IdentityError(f"{what} name {text!r} is not plain: use letters, digits, '.', '_' and '-', "
                            "starting with a letter or digit")
    return text


@dataclass(frozen=True)
class Identity:
    role: str
    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    cluster: str = ""
    serial: str = ""  # the certificate's serial number, lower-case hex; "" without one

    @property
    def verified(self) -> bool:
        return self.role in ROLES

    def __str__(self) -> str:
        text = f"{self.role} {self.name}"
        if self.groups:
            text += f" (groups {','.join(sorted(self.groups))})"
        return text


LOCAL = Identity(LOCAL_ROLE, "local")


def insecure(peer: str) -> Identity:
    return Identity(INSECURE_ROLE, peer or "unknown peer")


def role_uri(cluster: str, role: str, name: str) -> str:
    return f"{SCHEME}://{cluster}/{role}/{name}"


def san_uris(cluster: str, role: str, name: str, groups: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The SAN URIs of a certificate for (role, name), after checking every part is plain."""
    if role not in ROLES:
        raise IdentityError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    check_name("cluster", cluster)
    check_name("user" if role in ("operator", "viewer") else "node", name)
    uris = [role_uri(cluster, role, name)]
    uris += [role_uri(cluster, GROUP, check_name("group", g)) for g in sorted(set(groups))]
    return uris


def reissue_hint(role: str = "ROLE", name: str = "NAME") -> str:
    flag = "--user" if role in ("operator", "viewer") else "--node"
    return f"re-issue it with `fleetctl certs issue --role {role} {flag} {name}`"


def from_certificate(cert: x509.Certificate) -> Identity:
    """The identity a verified certificate carries. Raises IdentityError naming the certificate."""
    from cryptography import x509

    subject = _common_name(cert)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    roles: list[tuple[str, str, str]] = []
    groups: set[str] = set()
    for uri in uris:
        parts = urlsplit(uri)
        if parts.scheme != SCHEME:
            continue
        kind, _, name = parts.path.strip("/").partition("/")
        cluster = parts.netloc
        try:
            check_name("cluster", cluster)
            check_name(kind or "role", name)
        except IdentityError as exc:
            raise IdentityError(f"certificate {subject!r} has a malformed fleetvisor URI: {exc}") from None
        if kind == GROUP:
            groups.add(name)
        elif kind in ROLES:
            roles.append((cluster, kind, name))
        else:
            raise IdentityError(f"certificate {subject!r} names an unknown role {kind!r}; {reissue_hint()}")
    if not roles:
        raise IdentityError(f"certificate {subject!r} carries no fleetvisor role; {reissue_hint(name=subject)}")
    if len(roles) > 1:
        raise IdentityError(f"certificate {subject!r} carries {len(roles)} roles; {reissue_hint(name=subject)}")
    cluster, role, name = roles[0]
    return Identity(role, name, frozenset(groups), cluster, format(cert.serial_number, "x"))


def from_pem(data: bytes) -> Identity:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise IdentityError(f"not a PEM certificate: {exc}") from None
    return from_certificate(cert)


def _common_name(cert: x509.Certificate) -> str:
    from cryptography import x509

    names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode(errors="replace")
