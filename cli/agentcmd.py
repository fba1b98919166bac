"""fleetctl's `agent` commands: the agent process itself, on one node (per-node mode)."""

from __future__ import annotations

import click
from rich.text import Text

from fleetvisor.v1 import agent_pb2 as pb

from . import render
from .client import CommandError
from .context import Ctx, Mode, run_command
from .exitcodes import USAGE


@click.group("agent")
def agent() -> None:
    """The agent process of one node (needs --node).

    \b
    Example:
      fleetctl --node 10.0.0.5:7401 agent reexec
    """


@agent.command("reexec")
@click.option("--dry-run", is_flag=True, help="Only check: the config unchanged since it was applied, the "
                                              "installed agent's dry run.")
@click.pass_obj
@run_command
def reexec(obj: Ctx, dry_run: bool) -> None:
    """Upgrade the agent in place: it execs the installed agent, and every program keeps running.

    Pids, output pipes, logs and the listening sockets carry over; the agent is back on the
    same address a moment later. A new agent that fails its dry run is refused and nothing
    changes.

    \b
    Examples:
      fleetctl --node 10.0.0.5:7401 agent reexec --dry-run
      fleetctl --node 10.0.0.5:7401 agent reexec
    """
    if obj.mode is Mode.FLEET:
        raise CommandError("`fleetctl agent reexec` runs on one node: pass --node HOST:PORT", USAGE)
    reply = obj.call("Reexec", pb.ReexecRequest(dry_run=dry_run))
    node = obj.node()
    installed = f"; the installed agent is version {reply.agent_version}" if reply.agent_version else ""
    line = (f"{node}: the agent can be re-exec'd (pid {reply.pid}){installed}" if dry_run
            else f"{node}: the agent (pid {reply.pid}) is handing over to the installed agent; every program keeps "
                 "running")
    render.show(obj.json, reply, lambda: Text(line))
