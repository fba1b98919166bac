"""The pure security core: identities read from real certificates, policy decisions, and a
rule for every RPC of both services."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from fleetvisor.agent.security import identity as ident
from fleetvisor.agent.security import policy as pol
from fleetvisor.agent.security.rules import RULES, verb_for
from fleetvisor.v1 import agent_pb2, controller_pb2, peer_pb2


def _cert(uris: list[str], cn: str = "x") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(0xABC123).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if uris:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(cn)]), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_identity_round_trips_through_a_certificate() -> None:
    uris = ident.san_uris("prod", "operator", "alice", ["web", "admins"])
    found = ident.from_certificate(_cert(uris, "alice"))
    assert found == ident.Identity("operator", "alice", frozenset({"web", "admins"}), "prod", "abc123")
    assert str(found) == "operator alice (groups admins,web)"


@pytest.mark.parametrize("uris", [[], ["spiffe://x/y"], ["https://example.com/agent/web-1"]])
def test_a_certificate_without_a_role_is_refused_with_how_to_reissue(uris: list[str]) -> None:
    with pytest.raises(ident.IdentityError, match="carries no fleetvisor role.*fleetctl certs issue --role"):
        ident.from_certificate(_cert(uris, "web-1"))


def test_two_roles_or_a_malformed_name_are_refused() -> None:
    with pytest.raises(ident.IdentityError, match="2 roles"):
        ident.from_certificate(_cert(["fleetvisor://c/agent/a", "fleetvisor://c/operator/a"]))
    with pytest.raises(ident.IdentityError, match="malformed"):
        ident.from_certificate(_cert(["fleetvisor://c/agent/a%2F..%2Fb"]))
    with pytest.raises(ident.IdentityError, match="unknown role"):
        ident.from_certificate(_cert(["fleetvisor://c/root/a"]))


@pytest.mark.parametrize("name", ["", "ca/../x", "..", "-x", "junk/0", "a\nb", "<script>", "x" * 64, "a..b"])
def test_names_must_be_plain(name: str) -> None:
    with pytest.raises(ident.IdentityError):
        ident.check_name("node", name)


def test_plain_names_pass() -> None:
    for name in ("web-1", "db.eu_2", "A9", "x" * 63):
        assert ident.check_name("node", name) == name


def _op(name: str, *groups: str) -> ident.Identity:
    return ident.Identity("operator", name, frozenset(groups), "c")


WEB = {"role": "web"}
DB = {"role": "db"}


def test_builtins() -> None:
    authz = pol.Authorizer()
    assert authz.everywhere(_op("root-ish", "admins"), pol.ADMIN)
    assert not authz.may(_op("alice"), pol.READ)  # an operator with no policy gets nothing
    viewer = ident.Identity("viewer", "v", cluster="c")
    assert authz.allows(viewer, pol.READ, node="db-1", labels=DB)
    assert not authz.may(viewer, pol.CONTROL)
    agent = ident.Identity("agent", "web-1", cluster="c")
    assert authz.allows(agent, pol.HEARTBEAT, node="web-1")
    assert not authz.allows(agent, pol.HEARTBEAT, node="web-2")
    assert not any(authz.may(agent, v) for v in pol.VERBS)
    assert authz.everywhere(ident.LOCAL, pol.DEPLOY)


def test_a_scoped_operator_controls_web_on_web_nodes_only() -> None:
    policy = pol.make("web-ops", [pol.READ, pol.CONTROL], groups=["web"], labels=WEB, programs="web:*")
    authz = pol.Authorizer([policy])
    bob = _op("bob", "web")
    assert authz.allows(bob, pol.CONTROL, node="web-1", labels=WEB, program=("web", "web_0"))
    assert not authz.allows(bob, pol.CONTROL, node="db-1", labels=DB, program=("web", "web_0"))
    assert not authz.allows(bob, pol.CONTROL, node="web-1", labels=WEB, program=("db", "db"))
    assert not authz.may(bob, pol.DEPLOY)
    assert not authz.everywhere(bob, pol.READ)


def test_run_as_limits_what_a_deploy_scope_may_push() -> None:
    policy = pol.make("web-deploy", [pol.DEPLOY], users=["carol"], labels=WEB, run_as=["www-data"])
    authz = pol.Authorizer([policy])
    carol = _op("carol")
    assert authz.allows(carol, pol.DEPLOY, program=("web", "web"), run_as="www-data")
    assert not authz.allows(carol, pol.DEPLOY, program=("web", "web"), run_as=pol.ROOT)


def test_roles_cap_what_policies_give() -> None:
    policy = pol.make("everyone", list(pol.VERBS), roles=["viewer"])
    viewer = ident.Identity("viewer", "v", cluster="c")
    assert not pol.Authorizer([policy]).may(viewer, pol.CONTROL)
    with pytest.raises(pol.PolicyError, match="agents only heartbeat"):
        pol.make("agents", [pol.READ], roles=["agent"])


def test_selector_coverage() -> None:
    label_scope = pol.Scope(labels=(("role", "web"),))
    assert label_scope.covers_selector({"role": "web", "dc": "x"}, [])
    assert not label_scope.covers_selector({}, ["web-1"])
    node_scope = pol.Scope(nodes="web-*")
    assert node_scope.covers_selector({}, ["web-1", "web-2"])
    assert not node_scope.covers_selector({"role": "web"}, [])


def test_policy_json_round_trip_and_errors() -> None:
    policy = pol.make("p1", [pol.READ, pol.DEPLOY], users=["a"], groups=["g"], labels=WEB, nodes="web-*",
                      programs="web", run_as=["*"])
    assert pol.Policy.from_json(policy.to_json()) == policy
    state = pol.PolicySet(7, [policy], {"abc": "operator mallory"})
    assert pol.PolicySet.from_json(state.to_json()) == state
    for bad, message in [('{"name": "x", "verbs": ["fly"], "subjects": {"users": ["a"]}}', "verbs"),
                         ('{"name": "x", "verbs": ["read"]}', "subject"),
                         ('{"name": "../x", "verbs": ["read"], "subjects": {"users": ["a"]}}', "not plain"),
                         ("[]", "object"), ("{", "JSON")]:
        with pytest.raises(pol.PolicyError, match=message):
            pol.Policy.from_json(bad)


@pytest.mark.parametrize("module,service", [(agent_pb2, "AgentService"), (controller_pb2, "ControllerService"),
                                            (peer_pb2, "PeerService"), (health_pb2, "Health"),
                                            (reflection_pb2, "ServerReflection")])
def test_every_rpc_has_a_rule(module: object, service: str) -> None:
    descriptor = module.DESCRIPTOR.services_by_name[service]  # type: ignore[attr-defined]
    missing = [m.name for m in descriptor.methods if verb_for(f"/{descriptor.full_name}/{m.name}") is None]
    assert not missing, f"{service} RPCs without an authorization rule: {missing}"
    assert set(RULES[descriptor.full_name]) == {m.name for m in descriptor.methods}


def test_unknown_methods_have_no_rule() -> None:
    assert verb_for("/fleetvisor.v1.AgentService/Nope") is None
    assert verb_for("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo") is None  # v1alpha only
    assert verb_for("/grpc.health.v1.Health/Nope") is None


def test_policies_cross_the_wire_unchanged() -> None:
    from fleetvisor.agent.security import wire

    policy = pol.make("p", [pol.CONTROL], groups=["web"], labels=WEB, nodes="web-*", programs="web:*",
                      run_as=["www-data"])
    state = pol.PolicySet(3, [policy], {"ab12": "operator mallory"})
    assert wire.state_from_pb(wire.state_to_pb(state)) == state


def test_peer_service_serves_controllers_only_and_controllers_nothing_else() -> None:
    """A controller's guard: PeerService to controller certificates, ControllerService never to them."""
    from fleetvisor.agent.security.guard import CONTROLLER_SERVES, PEER_SERVES, Gate, Mode, Refused
    from fleetvisor.agent.security.rules import CONTROLLER_SERVICE, PEER_SERVICE

    gate = Gate(Mode.TLS, cluster="c", roles=CONTROLLER_SERVES, service_roles={PEER_SERVICE: PEER_SERVES})
    controller = ident.Identity("controller", "ctl-2", cluster="c")
    peer, status = f"/{PEER_SERVICE}/FollowLive", f"/{CONTROLLER_SERVICE}/GetStatus"
    gate.permit(controller, peer)
    with pytest.raises(Refused, match="serves controller certificates only"):
        gate.permit(ident.Identity("operator", "root", frozenset({"admins"}), "c"), peer)
    with pytest.raises(Refused, match="serves agent, operator, viewer certificates only"):
        gate.permit(controller, status)
    assert not pol.Authorizer([pol.make("peers", pol.VERBS, roles=["operator"])]).may(
        ident.Identity("operator", "x", cluster="c"), pol.PEER), "no policy grants peer"
    assert pol.Authorizer().may(ident.LOCAL, pol.PEER)  # plaintext on loopback: as every other verb
