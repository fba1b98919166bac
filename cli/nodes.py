"""fleetctl's `nodes adopt`, `nodes pin` and `nodes unpin`: nodes the controller does not
reconcile as usual (controller/nodepolicy.py has the rules). Each needs deploy on the node.

main.py adds them to the `nodes` group (fleet.py).
"""

from __future__ import annotations

import click
from rich.text import Text

from fleetvisor.v1 import controller_pb2 as cpb

from . import fleetrender as view
from . import render
from .context import Ctx, run_command


def _done(obj: Ctx, reply: cpb.NodeInfo, line: str) -> None:
    note = view.node_note(reply)
    render.show(obj.json, reply, lambda: Text.assemble(line, "  ", note) if note else Text(line))


@click.command("adopt")
@click.argument("name")
@click.option("--keep", is_flag=True,
              help="Keep what the node runs: record it as this cluster's and push nothing (until its desired "
                   "revision changes). Without it the node gets its desired revision from this store.")
@click.pass_obj
@run_command
def adopt(obj: Ctx, name: str, keep: bool) -> None:
    """Take foreign node NAME into this cluster.

    A node is foreign when another cluster (another etcd, or another store) last reconciled it,
    or when it runs configs this store does not know; the controller pushes nothing to it, so
    that its programs keep running, until it is adopted. Without --keep the node gets what this
    store assigns it, which may stop programs this store does not have.

    \b
    Examples:
      fleetctl nodes adopt web-1 --keep    # keep its programs as they are
      fleetctl nodes adopt web-1           # make it run this store's configs
    """
    reply = obj.controller("nodes adopt").call("AdoptNode", cpb.AdoptNodeRequest(node=name, keep=keep))
    what = "its revision is kept" if keep else f"it gets {reply.desired_revision or 'no config'} from this store"
    _done(obj, reply, f"node {name} adopted: {what}")


@click.command("pin")
@click.argument("name")
@click.option("-m", "--message", "reason", default="", help="Why (recorded with the pin and in the audit log).")
@click.pass_obj
@run_command
def pin(obj: Ctx, name: str, reason: str) -> None:
    """Hold node NAME at its local state: the controller pushes nothing to it.

    For an incident: a per-node `config apply --force` on a pinned node stays; on an unpinned
    node the controller reverts it. Every controller of the cluster agrees (the pin is in etcd).

    \b
    Example:
      fleetctl nodes pin web-1 -m "incident 4711: hotfix applied by hand"
    """
    reply = obj.controller("nodes pin").call("PinNode", cpb.PinNodeRequest(node=name, reason=reason))
    _done(obj, reply, f"node {name} pinned: the controller pushes nothing to it until `fleetctl nodes unpin {name}`")


@click.command("unpin")
@click.argument("name")
@click.pass_obj
@run_command
def unpin(obj: Ctx, name: str) -> None:
    """Release node NAME: the controller reconciles it again (a per-node revision is reverted).

    \b
    Example:
      fleetctl nodes unpin web-1
    """
    reply = obj.controller("nodes unpin").call("UnpinNode", cpb.PinNodeRequest(node=name))
    _done(obj, reply, f"node {name} unpinned: the controller reconciles it again")


NODES_COMMANDS = (adopt, pin, unpin)
