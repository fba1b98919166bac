"""fleetctl: the operator's terminal for a fleetvisor fleet.

Two modes, chosen in context.py: fleet mode talks to a controller (`--controller`), per-node
mode (`--node HOST:PORT`) straight to one agent, which is what still works when the
controller is down. The verbs both modes share are defined once here and branch on the mode;
the fleet side lives in fleet.py.
"""

from __future__ import annotations

import hashlib
import sys

import click
import grpc
from rich.console import Group
from rich.table import Table
from rich.text import Text

from fleetvisor.agent.logfiles import MAX_TAIL_BYTES
from fleetvisor.v1 import agent_pb2 as pb

from . import admin, fleet, fleetconfig, fleetrender, managed, nodes, ops, render
from .agentcmd import agent
from .certs import certs
from .client import CommandError
from .context import Ctx, Mode, node_only, run_command
from .exitcodes import STATUS_UNKNOWN, USAGE, processes_code, results_code
from .group import OutputGroup, output_option
from .settings import SettingsError, resolve

STATUS_HELP = """Process states: per node, or across the fleet with the controller.

\b
Fleet mode: NAMES are NODE, NODE:NAME, NODE:group:* (NODE may be a glob) or all.
Per-node mode (--node): NAMES are name, group:name, group:*.
Without NAMES, a fleet of more than `summary_above` processes (a setting, default 100) is
shown as a summary that fits the screen: one line per group (RUNNING/total, the other states
and where they are), then the problems, worst first (down nodes, FATAL, BACKOFF, unexpected
exits, UNHEALTHY, drift, paused or failed operations). --all shows every process instead.
Exit status: 0 all running, 3 some process not running (or a node down), 4 an unknown name
or no answer (the controller or agent cannot be reached), as supervisorctl.

\b
Examples:
  fleetctl status                       # the whole fleet (a summary when it is big)
  fleetctl status --problems            # the rows of what needs a person
  fleetctl status --state FATAL,BACKOFF
  fleetctl status 'web-*:app' --label dc=east
  fleetctl status --watch
  fleetctl --node 10.0.0.5:7401 status app
"""


@click.group(cls=OutputGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--controller", metavar="HOST:PORT[,...]",
              help="The fleet's controllers, comma-separated: asked in turn, the one that answered last first; "
                   "writes go on to the leader (env FLEETCTL_CONTROLLER).")
@click.option("--node", metavar="HOST:PORT", help="Talk to this agent directly (env FLEETCTL_NODE); "
                                                 "beats the controller when given here.")
@output_option()
@click.option("--tls-cert", metavar="FILE", help="Client certificate (env FLEETCTL_TLS_CERT).")
@click.option("--tls-key", metavar="FILE", help="Client key (env FLEETCTL_TLS_KEY).")
@click.option("--tls-ca", metavar="FILE", help="CA that signed the server's certificate (env FLEETCTL_TLS_CA).")
@click.option("--timeout", type=float, help="Seconds to wait for an answer (default 30).")
@click.option("--config", "config_path", metavar="FILE",
              help="fleetctl config file (TOML; env FLEETCTL_CONFIG; default ~/.config/fleetvisor/fleetctl.toml).")
@click.pass_context
def cli(ctx: click.Context, controller: str | None, node: str | None, output: str, tls_cert: str | None,
        tls_key: str | None, tls_ca: str | None, timeout: float | None, config_path: str | None) -> None:
    """Drive a fleetvisor fleet: status, start/stop, logs and config, fleet-wide or per node.

    \b
    Examples:
      fleetctl --controller 10.0.0.1:7400 status
      fleetctl --controller 10.0.0.1:7400,10.0.0.2:7400,10.0.0.3:7400 leader
      fleetctl --node 10.0.0.5:7401 restart app
      FLEETCTL_CONFIG=~/prod.toml fleetctl status

    With several controllers, one that is down is passed over (a host that does not answer
    after 5 s) and the one that answered is asked first next time; the TLS options apply to each.
    When none answers, the error names every one tried and why, with exit status 4.

    \b
    Settings come from the options, then FLEETCTL_* variables, then the
    config file: --config FILE, else $FLEETCTL_CONFIG, else
    ~/.config/fleetvisor/fleetctl.toml.
    """
    try:
        settings = resolve({"node": node, "controller": controller, "tls_cert": tls_cert, "tls_key": tls_key,
                            "tls_ca": tls_ca, "timeout": timeout}, config_path)
    except SettingsError as exc:
        render.err.print(f"[red]error:[/] {render.escape(str(exc))}")
        sys.exit(USAGE)
    ctx.obj = Ctx(settings, output, node_flag=node)


# -- status and info ---------------------------------------------------------------------------

@cli.command(help=STATUS_HELP)
@click.argument("names", nargs=-1)
@fleet.label_option("nodes", shared=True)
@click.option("--watch", "-w", is_flag=True, help="Redraw whenever something changes (fleet mode; Ctrl-C stops).")
@click.option("--summary", is_flag=True,
              help="The summary view whatever the fleet's size, also with NAMES (fleet mode).")
@click.option("--all", "every", is_flag=True, help="Every process, however many (fleet mode).")
@click.option("--problems", is_flag=True,
              help="Only the processes and nodes counted as problems (fleet mode).")
@click.option("--state", "states", multiple=True, metavar="STATE[,...]",
              help="Only processes in these states, e.g. FATAL,BACKOFF; UNHEALTHY is RUNNING with a failing "
                   "health check (fleet mode; repeatable).")
@click.pass_obj
@run_command
def status(obj: Ctx, names: tuple[str, ...], labels: tuple[str, ...], watch: bool, summary: bool, every: bool,
           problems: bool, states: tuple[str, ...]) -> int:
    try:
        if obj.mode is Mode.FLEET:
            if summary and every:
                raise CommandError("--summary and --all are two different views: give one of them", USAGE)
            shape = fleet.StatusShape(summary=True if summary else False if every else None,
                                      states=fleet.parse_states(states), problems=problems)
            return fleet.run_status(obj, names, labels, watch, shape)
        node_only(obj, "status", **{"--label": labels, "--watch": watch, "--summary": summary, "--all": every,
                                    "--problems": problems, "--state": states})
        info = obj.call("GetInfo", pb.GetInfoRequest())
        listing = obj.call("ListProcesses", pb.ListProcessesRequest(names=[n for n in names if n != "all"]))
    except CommandError as exc:
        if exc.exit_code == USAGE:  # a usage problem stays one
            raise
        if exc.exit_code == STATUS_UNKNOWN and obj.mode is Mode.NODE:  # supervisorctl's "no such process"
            raise CommandError(f"{exc} (no such process or group)", STATUS_UNKNOWN) from None
        raise CommandError(str(exc), STATUS_UNKNOWN) from None  # status cannot tell: 4, as supervisorctl
    render.show(obj.json, {"node": info.node, "processes": listing.processes},
                lambda: render.process_table(info.node, listing.processes))
    return processes_code(listing.processes)


@cli.command()
@click.pass_obj
@run_command
def info(obj: Ctx) -> None:
    """One agent: node name, labels, versions, applied revision, uptime (needs a node).

    \b
    Example:
      fleetctl --node 10.0.0.5:7401 info
    """
    reply = obj.call("GetInfo", pb.GetInfoRequest())
    render.show(obj.json, reply, lambda: _info_view(reply))


def _info_view(reply: pb.AgentInfo) -> Table:
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(justify="right", style="bold", no_wrap=True)
    table.add_column()
    labels = ",".join(f"{k}={v}" for k, v in sorted(reply.labels.items())) or "-"
    for key, value in (("node", reply.node), ("labels", labels), ("agent", reply.agent_version),
                       ("supervisor api", f"{reply.supervisor_version} (XML-RPC {reply.api_version})"),
                       ("applied revision", reply.applied_revision or "-"), ("pid", reply.pid),
                       ("uptime", f"{reply.uptime_seconds:.0f} s"),
                       ("state", pb.SupervisorState.Name(reply.state).removeprefix("SUPERVISOR_"))):
        table.add_row(key, Text(str(value)))
    return table


# -- process control ---------------------------------------------------------------------------

PER_NODE_METHOD = {"start": "Start", "stop": "Stop", "restart": "Restart"}
FORCED = ("start", "stop")  # per node, on a fleet program of a managed node: only with --force
CONTROL_EXAMPLES = """
\b
Fleet mode: NAMES are host-prefixed (web-1:app, *:worker, web-*:workers:*) or all.
Per-node mode (--node): name, group:*, all. Exit 1 on a failure, 7 if a process ended dead.

\b
Examples:
  fleetctl {verb} 'web-*:app' --label dc=east
  fleetctl {verb} all
  fleetctl --node 10.0.0.5:7401 {verb} app
"""
FORCED_NOTE = """
Per node, a fleet program of a node that heartbeats to a controller is refused unless
--force is given: {verb} it through the controller, or pin the node first (fleetctl nodes pin NODE).
"""


def _control(obj: Ctx, action: str, names: tuple[str, ...], labels: tuple[str, ...], wait: bool,
             force: bool = False) -> int:
    if obj.mode is Mode.FLEET:
        if force:
            raise CommandError(f"--force is for per-node mode (--node): `fleetctl {action}` through the "
                               "controller needs none", USAGE)
        return fleet.run_control(obj, action, names, labels, wait)
    node_only(obj, action, **{"--label": labels})
    if not names:
        raise CommandError("name required: give process names, group:*, or all", USAGE)
    if action in FORCED and not force:
        managed.check_control(obj.call("GetInfo", pb.GetInfoRequest()), action, names)
    everything = "all" in names
    request = pb.ProcessCommand(names=[n for n in names if n != "all"], all=everything, wait=wait, force=force)
    reply = obj.call(PER_NODE_METHOD[action], request, timeout=max(obj.settings.timeout, 600))
    render.show(obj.json, reply.results, lambda: render.command_results(reply.results, fleetrender.VERBS[action]))
    return results_code(reply.results, action)


def _control_command(action: str, summary: str, wait_help: str) -> click.Command:
    forced = FORCED_NOTE.format(verb=action) if action in FORCED else ""

    @cli.command(action, help=summary + "\n" + CONTROL_EXAMPLES.format(verb=action) + forced)
    @click.argument("names", nargs=-1)
    @fleet.label_option("on nodes", shared=True)
    @click.option("--no-wait", is_flag=True, help=wait_help)
    @click.option("--force", is_flag=True, hidden=action not in FORCED,
                  help="Per-node mode: also on a fleet program of a node a controller manages.")
    @click.pass_obj
    @run_command
    def command(obj: Ctx, names: tuple[str, ...], labels: tuple[str, ...], no_wait: bool, force: bool) -> int:
        return _control(obj, action, names, labels, not no_wait, force)
    return command


start = _control_command("start", "Start processes.", "Do not wait for the processes to be RUNNING.")
stop = _control_command("stop", "Stop processes.", "Do not wait for the processes to stop.")
restart = _control_command("restart", "Stop then start processes.",
                           "Do not wait for the processes to be RUNNING again.")


@cli.command("signal")
@click.argument("sig")
@click.argument("names", nargs=-1)
@fleet.label_option("on nodes", shared=True)
@click.pass_obj
@run_command
def signal_(obj: Ctx, sig: str, names: tuple[str, ...], labels: tuple[str, ...]) -> int:
    """Send signal SIG (HUP, SIGUSR1, 15 ...) to processes.

    \b
    Examples:
      fleetctl signal HUP '*:nginx'
      fleetctl --node 10.0.0.5:7401 signal USR1 app
    """
    if obj.mode is Mode.FLEET:
        return fleet.run_control(obj, "signal", names, labels, False, sig)
    node_only(obj, "signal", **{"--label": labels})
    if not names:
        raise CommandError("name required: give process names, group:*, or all", USAGE)
    everything = "all" in names
    reply = obj.call("Signal", pb.SignalCommand(names=[n for n in names if n != "all"], all=everything,
                                                signal=sig))
    render.show(obj.json, reply.results, lambda: render.command_results(reply.results, fleetrender.VERBS["signal"]))
    return results_code(reply.results, "signal")


# -- logs --------------------------------------------------------------------------------------

@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what is appended.")
@click.option("--stderr", is_flag=True, help="The stderr log instead of stdout.")
@click.option("-n", "--bytes", "nbytes", type=click.IntRange(0, MAX_TAIL_BYTES), default=1600, show_default=True,
              help=f"Last N bytes (at most {MAX_TAIL_BYTES}).")
@click.pass_obj
@run_command
def tail(obj: Ctx, name: str, follow: bool, stderr: bool, nbytes: int) -> None:
    """Print the end of a process's log; -f follows it (Ctrl-C to stop).

    NAME is NODE:NAME in fleet mode, the process name with --node.

    \b
    Examples:
      fleetctl tail -f web-1:app
      fleetctl tail --stderr -n 4000 web-2:workers:worker_01
      fleetctl --node 10.0.0.5:7401 tail app
    """
    if obj.mode is Mode.FLEET:
        return fleet.run_tail(obj, name, follow, stderr, nbytes)
    request = pb.TailLogRequest(name=name, stream=pb.STDERR if stderr else pb.STDOUT, last_bytes=nbytes,
                                follow=follow)
    stream, chan = obj.call("TailLog", request, stream=True, timeout=None if follow else obj.settings.timeout)
    try:
        render.write_log(stream, obj.json)
    except grpc.RpcError as exc:
        raise obj.node_error(exc, chan) from None
    finally:
        chan.close()


# -- config ------------------------------------------------------------------------------------

@cli.group()
def config() -> None:
    """Config revisions: pushed to the fleet through the controller, or applied on one node.

    \b
    Examples:
      fleetctl config push web.conf --name web --label role=web -m "4 workers"
      fleetctl config history web
      fleetctl --node 10.0.0.5:7401 config show
    """


@config.command("show")
@click.argument("name", required=False)
@click.option("--rev", type=int, metavar="N", help="This revision instead of the current one (fleet mode).")
@click.pass_obj
@run_command
def config_show(obj: Ctx, name: str | None, rev: int | None) -> None:
    """Print a config's text exactly (what it is goes to stderr).

    Fleet mode: revision N (default: current) of config NAME. Per-node mode (--node): the
    revision applied on the node, and whether the node's own files were edited by hand.

    \b
    Examples:
      fleetctl config show web --rev 3
      fleetctl --node 10.0.0.5:7401 config show
    """
    if obj.mode is Mode.FLEET:
        return fleetconfig.run_config_show(obj, name, rev)
    if name:
        raise CommandError(f"config show {name}: a NAME is for fleet mode; with a node, config show takes "
                           "no NAME (it shows the node's applied revision)", USAGE)
    node_only(obj, "config show", **{"--rev": rev})
    reply = obj.call("GetConfig", pb.GetConfigRequest())

    def exact_text() -> None:
        render.err.print(f"revision: {render.escape(reply.revision or '(none applied)')}   "
                         f"node config: {render.escape(reply.config_path)}"
                         + ("   [yellow]node files edited by hand since load[/]" if reply.edited_by_hand else ""))
        sys.stdout.write(reply.config_text)
    render.show(obj.json, reply, exact_text)


@config.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--dry-run", is_flag=True, help="Only show which groups would be added, changed, removed.")
@click.option("--revision", help="Revision id to record (default: local-<hash of the text>).")
@click.option("--force", is_flag=True, help="Apply although a controller manages the node (it shows as drift).")
@click.pass_obj
@run_command
def config_apply(obj: Ctx, file: str, dry_run: bool, revision: str | None, force: bool) -> None:
    """Apply program-level sections from FILE on one node (restarts only changed groups).

    For the fleet, use `fleetctl config push`. On a node that heartbeats to a controller this
    is refused unless --force is given: the controller would revert it. With --force the node
    runs a local revision, which the controller shows as drift and reverts unless the node is
    pinned (`fleetctl nodes pin NODE`).

    \b
    Examples:
      fleetctl --node 10.0.0.5:7401 config apply extra.conf --dry-run
      fleetctl nodes pin web-1 -m "incident 4711" && fleetctl --node 10.0.0.5:7401 config apply hotfix.conf --force
    """
    text = fleetconfig.read_config_file(file)
    if not dry_run and not force:
        managed.check_apply(obj.call("GetInfo", pb.GetInfoRequest()))
    revision = revision or "local-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    reply = obj.call("ApplyConfig", pb.ApplyConfigRequest(revision=revision, config_text=text, dry_run=dry_run,
                                                          force=force),
                     timeout=max(obj.settings.timeout, 600))
    render.show(obj.json, reply, lambda: _apply_view(reply, dry_run))


def _apply_view(reply: pb.ApplyConfigResponse, dry_run: bool) -> Group:
    verb = "would be " if dry_run else ""
    lines = [Text(f"{name}: {verb}{label}") for label, names in
             (("added", reply.added), ("changed", reply.changed), ("removed", reply.removed)) for name in names]
    if not lines:
        lines.append(Text("no group changes"))
    if not dry_run:
        lines.append(Text(f"revision {reply.revision} applied"))
    return Group(*lines)


for _command in fleetconfig.CONFIG_COMMANDS:
    config.add_command(_command)
for _command in admin.NODES_COMMANDS + nodes.NODES_COMMANDS:
    fleet.nodes.add_command(_command)
for _command in admin.CERTS_COMMANDS:
    certs.add_command(_command)
for _command in fleet.TOP_COMMANDS + ops.TOP_COMMANDS + admin.TOP_COMMANDS:
    cli.add_command(_command)
cli.add_command(certs)
cli.add_command(agent)


def _one_line(message: str) -> str:
    """click lays some messages out on several lines (a missing choice lists the choices one a line)."""
    return " ".join(message.split())


def main() -> None:
    """Run fleetctl; click's usage errors become one line like every other error."""
    try:
        code = cli.main(prog_name="fleetctl", standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the answer, as click does
            exc.show()
            sys.exit(exc.exit_code)
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        render.err.print(f"[red]error:[/] {render.escape(_one_line(exc.format_message()))}{render.escape(hint)}")
        code = exc.exit_code
    except click.ClickException as exc:
        render.err.print(f"[red]error:[/] {render.escape(_one_line(exc.format_message()))}")
        code = exc.exit_code
    except click.Abort:
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
