"""The pure parts of the admin commands: certificate serials as the controller stores them, and
how fleetctl shows a policy's subjects and scope."""

from __future__ import annotations

import pytest

from fleetvisor.cli.adminrender import scope_text, subjects_text
from fleetvisor.controller.admin import normalize_serial
from fleetvisor.controller.errors import InvalidArgument
from fleetvisor.v1 import controller_pb2 as cpb


@pytest.mark.parametrize("given, stored", [
    ("4a3f09c1", "4a3f09c1"), ("4A:3F:09:C1", "4a3f09c1"), ("0x00ab", "ab"), (" 00:0A ", "a"), ("0", "0"),
    ("f" * 40, "f" * 40),
])
def test_serials_are_stored_as_identities_carry_them(given, stored):
    assert normalize_serial(given) == stored


@pytest.mark.parametrize("given", ["", ":", "0x", "xyz", "4a 3f", "f" * 41, "../etc", "4a\n3f"])
def test_anything_else_is_not_a_serial(given):
    with pytest.raises(InvalidArgument, match="is not a certificate serial number"):
        normalize_serial(given)


def test_subjects_and_scope_leave_out_what_is_everything():
    everywhere = cpb.Policy(name="p", verbs=["read"], roles=["viewer"], nodes="*", programs="*")
    assert (subjects_text(everywhere), scope_text(everywhere)) == ("roles viewer", "everywhere")
    scoped = cpb.Policy(name="p", verbs=["control"], users=["alice", "bob"], groups=["web"],
                        labels={"role": "web", "dc": "east"}, nodes="web-*", programs="web:*")
    assert subjects_text(scoped) == "users alice,bob; groups web"
    assert scope_text(scoped) == "dc=east,role=web nodes web-* programs web:*"
