"""fleetctl's admin commands (verb admin, through the controller): `acl` for authorization
policies, `nodes forget` for a node that is gone, `certs revoke` and `certs revoked`.

main.py adds `forget` to the `nodes` group and the two certificate commands to `certs`, whose
other commands work offline.
"""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509
from rich.text import Text

from fleetvisor.agent.security.identity import IdentityError, check_name
from fleetvisor.agent.security.policy import VERBS
from fleetvisor.v1 import controller_pb2 as cpb

from . import adminrender as view
from . import render
from .client import CommandError
from .context import Ctx, run_command
from .exitcodes import STATUS_UNKNOWN, USAGE
from .patterns import parse_labels

# -- acl ---------------------------------------------------------------------------------------


@click.group()
def acl() -> None:
    """Authorization policies: who may read, control, deploy or administer what.

    Operators in group admins may do everything without a policy; viewers may read.

    \b
    Examples:
      fleetctl acl set web-ops --group web --verb read --verb control --label role=web --programs 'web:*'
      fleetctl acl set web-deploy --user alice --verb deploy --label role=web --run-as www-data
      fleetctl acl list
      fleetctl acl delete web-ops
    """


@acl.command("list")
@click.pass_obj
@run_command
def acl_list(obj: Ctx) -> None:
    """Every policy: verbs, subjects, scope and the users its deploys may run programs as.

    \b
    Example:
      fleetctl acl list -o json
    """
    reply = obj.controller("acl list").call("ListPolicies", cpb.ListPoliciesRequest())
    render.show(obj.json, reply, lambda: view.policies_table(reply.policies))


@acl.command("show")
@click.argument("name")
@click.pass_obj
@run_command
def acl_show(obj: Ctx, name: str) -> None:
    """One policy in full.

    \b
    Example:
      fleetctl acl show web-ops
    """
    reply = obj.controller("acl show").call("ListPolicies", cpb.ListPoliciesRequest())
    policy = next((p for p in reply.policies if p.name == name), None)
    if policy is None:
        raise CommandError(f"no such policy: {name}", STATUS_UNKNOWN)
    render.show(obj.json, policy, lambda: view.policy_view(policy))


@acl.command("set")
@click.argument("name")
@click.option("--verb", "verbs", multiple=True, required=True, type=click.Choice(VERBS),
              help="What it grants (repeatable): read, control, deploy or admin.")
@click.option("--user", "users", multiple=True, metavar="U", help="A person it applies to (repeatable).")
@click.option("--group", "groups", multiple=True, metavar="G", help="A group it applies to (repeatable).")
@click.option("--role", "roles", multiple=True, metavar="R",
              help="A certificate role it applies to: operator, viewer or controller (repeatable).")
@click.option("--label", "labels", multiple=True, metavar="K=V",
              help="Scope: only nodes with this label (repeatable; all must match).")
@click.option("--nodes", default="*", show_default=True, metavar="GLOB", help="Scope: node names matching GLOB.")
@click.option("--programs", default="*", show_default=True, metavar="PATTERN",
              help="Scope: processes matching a namespec pattern (web, web:*, web:web_0).")
@click.option("--run-as", "run_as", multiple=True, metavar="USER",
              help="A user pushed programs may run as (repeatable; '*' any). A program without user= "
                   "runs as root.")
@click.pass_obj
@run_command
def acl_set(obj: Ctx, name: str, verbs: tuple[str, ...], users: tuple[str, ...], groups: tuple[str, ...],
            roles: tuple[str, ...], labels: tuple[str, ...], nodes: str, programs: str,
            run_as: tuple[str, ...]) -> None:
    """Create policy NAME, or replace it with what is given here (nothing is merged).

    \b
    Examples:
      fleetctl acl set web-ops --group web --verb read --verb control --label role=web --programs 'web:*'
      fleetctl acl set db-viewers --role viewer --verb read --nodes 'db-*'
    """
    policy = cpb.Policy(name=name, verbs=verbs, users=users, groups=groups, roles=roles, labels=parse_labels(labels),
                        nodes=nodes, programs=programs, run_as=run_as)
    reply = obj.controller("acl set").call("SetPolicy", cpb.SetPolicyRequest(policy=policy))
    render.show(obj.json, reply, lambda: view.policy_view(reply))


@acl.command("delete")
@click.argument("name")
@click.pass_obj
@run_command
def acl_delete(obj: Ctx, name: str) -> None:
    """Delete policy NAME: what it granted is refused from now on.

    \b
    Example:
      fleetctl acl delete web-ops
    """
    obj.controller("acl delete").call("DeletePolicy", cpb.DeletePolicyRequest(name=name))
    render.show(obj.json, {"deleted": name}, lambda: Text(f"policy {name} deleted"))


# -- nodes forget ------------------------------------------------------------------------------

@click.command("forget")
@click.argument("name")
@click.pass_obj
@run_command
def forget(obj: Ctx, name: str) -> None:
    """Remove node NAME, which is gone for good, from the fleet (refused while it is up).

    It leaves status and the node list, and configs assigned to it by name no longer name it.
    An agent that starts again under this name joins afresh.

    \b
    Example:
      fleetctl nodes forget web-3
    """
    obj.controller("nodes forget").call("ForgetNode", cpb.ForgetNodeRequest(node=name))
    render.show(obj.json, {"forgotten": name}, lambda: Text(f"node {name} forgotten"))


# -- certs revoke / revoked --------------------------------------------------------------------

@click.command("revoke")
@click.argument("certificate", metavar="SERIAL|NAME")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Revoke NAME: the serial is read from DIR/NAME.pem.")
@click.pass_obj
@run_command
def revoke(obj: Ctx, certificate: str, directory: Path | None) -> None:
    """Revoke a certificate: controllers refuse it at once, agents once they hear of it.

    SERIAL is its serial number in hex (openssl x509 -serial); with --dir, NAME is the
    certificate `certs issue` wrote there.

    \b
    Examples:
      fleetctl certs revoke 4a3f09c1d2
      fleetctl certs revoke mallory --dir pki
    """
    serial, name = (_serial_of(directory, certificate), certificate) if directory else (certificate, "")
    reply = obj.controller("certs revoke").call("RevokeCertificate",
                                                cpb.RevokeCertificateRequest(serial=serial, name=name))
    render.show(obj.json, reply, lambda: view.revocation_line(reply))


def _serial_of(directory: Path, name: str) -> str:
    """The serial of DIR/NAME.pem, as lower-case hex; a missing or unreadable file is a usage error."""
    try:
        check_name("certificate", name)
    except IdentityError as exc:
        raise CommandError(str(exc), USAGE) from None
    path = directory / f"{name}.pem"
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read certificate {path}: {exc.strerror}", USAGE) from None
    except ValueError:
        raise CommandError(f"{path} is not a PEM certificate", USAGE) from None
    return format(cert.serial_number, "x")


@click.command("revoked")
@click.pass_obj
@run_command
def revoked(obj: Ctx) -> None:
    """The revoked certificates, oldest first.

    \b
    Example:
      fleetctl certs revoked
    """
    reply = obj.controller("certs revoked").call("ListRevocations", cpb.ListRevocationsRequest())
    render.show(obj.json, reply, lambda: view.revocations_table(reply.revoked))


# -- dashboard-rotate-key ----------------------------------------------------------------------

@click.command("dashboard-rotate-key")
@click.pass_obj
@run_command
def dashboard_rotate_key(obj: Ctx) -> None:
    """Give the dashboard's login tokens a new key (admin): every token made before is refused
    at once, by every controller, and open dashboard pages ask for a new login.

    \b
    Example:
      fleetctl dashboard-rotate-key
    """
    reply = obj.controller("dashboard-rotate-key").call("RotateDashboardKey", cpb.RotateDashboardKeyRequest())
    render.show(obj.json, reply, lambda: Text(f"dashboard token key {reply.key_id} in use: log in again "
                                             "with `fleetctl dashboard-login`"))


TOP_COMMANDS = (acl, dashboard_rotate_key)
NODES_COMMANDS = (forget,)
CERTS_COMMANDS = (revoke, revoked)
