"""fleetctl: the operator's terminal for a fleetvisor fleet.

Per-node mode (`--node HOST:PORT`) talks straight to one agent over gRPC; it is what still
works when the controller is down.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import click
import grpc

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import agent_pb2_grpc as pb_grpc

from . import render
from .certs import certs
from .client import CommandError, channel, describe_rpc_error
from .settings import Settings, SettingsError, resolve

# supervisorctl's exit statuses
EXIT_GENERIC = 1
EXIT_NOT_RUNNING = 7  # a start/stop left a process dead (spawn error, abnormal termination)
STATUS_NOT_RUNNING = 3
STATUS_UNKNOWN = 4
DEAD_PROGRAM = {"SPAWN_ERROR", "ABNORMAL_TERMINATION", "NOT_RUNNING"}
STOPPED_STATES = {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}


@dataclass
class Ctx:
    settings: Settings
    output: str

    @property
    def json(self) -> bool:
        return self.output == "json"

    def node(self) -> str:
        if not self.settings.node:
            raise CommandError("no node given: use --node HOST:PORT (or FLEETCTL_NODE, or node= in the "
                               "fleetctl config file)", 2)
        return self.settings.node

    def call(self, method: str, request, *, stream: bool = False, timeout: float | None = None):
        """Call AgentService.method on the node; transport errors become CommandError."""
        target = self.node()
        chan = channel(target, self.settings)
        stub = pb_grpc.AgentServiceStub(chan)
        try:
            result = getattr(stub, method)(request, timeout=timeout or self.settings.timeout)
            return (result, chan) if stream else result
        except grpc.RpcError as exc:
            raise describe_rpc_error(exc, target) from None
        finally:
            if not stream:
                chan.close()


def run_command(fn: Callable[..., int | None]) -> Callable[..., None]:
    """Every command: errors are one line on stderr and an exit status, never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> None:
        try:
            code = fn(*args, **kwargs) or 0
        except CommandError as exc:
            render.err.print(f"[red]error:[/] {exc}", markup=True)
            code = exc.exit_code
        except KeyboardInterrupt:
            code = 130
        sys.exit(code)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--node", metavar="HOST:PORT", help="Talk to this agent directly (env FLEETCTL_NODE).")
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--tls-cert", metavar="FILE", help="Client certificate (env FLEETCTL_TLS_CERT).")
@click.option("--tls-key", metavar="FILE", help="Client key (env FLEETCTL_TLS_KEY).")
@click.option("--tls-ca", metavar="FILE", help="CA that signed the agent's certificate (env FLEETCTL_TLS_CA).")
@click.option("--timeout", type=float, help="Seconds to wait for an answer (default 30).")
@click.option("--config", "config_path", metavar="FILE", help="fleetctl config file (TOML).")
@click.pass_context
def cli(ctx: click.Context, node, output, tls_cert, tls_key, tls_ca, timeout, config_path) -> None:
    """Drive a fleetvisor fleet: status, start/stop, logs and config, per node or fleet-wide."""
    try:
        settings = resolve({"node": node, "tls_cert": tls_cert, "tls_key": tls_key, "tls_ca": tls_ca,
                            "timeout": timeout}, config_path)
    except SettingsError as exc:
        render.err.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    ctx.obj = Ctx(settings, output)


# -- status and info ---------------------------------------------------------------------------

@cli.command()
@click.argument("names", nargs=-1)
@click.pass_obj
@run_command
def status(obj: Ctx, names: tuple[str, ...]) -> int:
    """Process states on the node (all, or NAMES: name, group:name, group:*)."""
    try:
        info = obj.call("GetInfo", pb.GetInfoRequest())
        listing = obj.call("ListProcesses", pb.ListProcessesRequest(names=[n for n in names if n != "all"]))
    except CommandError as exc:
        if exc.exit_code == 2:  # a usage problem stays one
            raise
        if exc.exit_code == 4:  # a bad name: supervisorctl's "no such process"
            raise CommandError(f"{exc} (no such process or group)", STATUS_UNKNOWN) from None
        raise CommandError(str(exc), STATUS_UNKNOWN) from None  # status cannot tell: 4, as supervisorctl
    if obj.json:
        render.print_json({"node": info.node, "processes": [render.as_dict(p) for p in listing.processes]})
    else:
        render.out.print(render.process_table(info.node, listing.processes))
    return STATUS_NOT_RUNNING if any(p.statename in STOPPED_STATES for p in listing.processes) else 0


@cli.command()
@click.pass_obj
@run_command
def info(obj: Ctx) -> None:
    """The agent: node name, labels, versions, applied revision, uptime."""
    reply = obj.call("GetInfo", pb.GetInfoRequest())
    if obj.json:
        render.print_json(render.as_dict(reply))
        return
    labels = ",".join(f"{k}={v}" for k, v in sorted(reply.labels.items())) or "-"
    for key, value in (("node", reply.node), ("labels", labels), ("agent", reply.agent_version),
                       ("supervisor api", f"{reply.supervisor_version} (XML-RPC {reply.api_version})"),
                       ("applied revision", reply.applied_revision or "-"), ("pid", reply.pid),
                       ("uptime", f"{reply.uptime_seconds:.0f} s"),
                       ("state", pb.SupervisorState.Name(reply.state).removeprefix("SUPERVISOR_"))):
        render.out.print(f"[bold]{key:>17}[/]  {value}")


# -- process control ---------------------------------------------------------------------------

def _control(obj: Ctx, method: str, names: tuple[str, ...], wait: bool, verb: str, ignored: str) -> int:
    if not names:
        raise CommandError(f"name required: give process names, group:*, or all", 2)
    everything = "all" in names
    request = pb.ProcessCommand(names=[n for n in names if n != "all"], all=everything, wait=wait)
    reply = obj.call(method, request, timeout=max(obj.settings.timeout, 600))
    if obj.json:
        render.print_json([render.as_dict(r) for r in reply.results])
    else:
        render.command_results(reply.results, verb)
    code = 0
    for r in reply.results:
        if not r.ok and r.status != ignored:
            code = EXIT_NOT_RUNNING if r.status in DEAD_PROGRAM else max(code, EXIT_GENERIC)
    return code


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--no-wait", is_flag=True, help="Do not wait for the processes to be RUNNING.")
@click.pass_obj
@run_command
def start(obj: Ctx, names, no_wait) -> int:
    """Start processes (name, group:*, all)."""
    return _control(obj, "Start", names, not no_wait, "started", "ALREADY_STARTED")


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--no-wait", is_flag=True, help="Do not wait for the processes to stop.")
@click.pass_obj
@run_command
def stop(obj: Ctx, names, no_wait) -> int:
    """Stop processes (name, group:*, all)."""
    return _control(obj, "Stop", names, not no_wait, "stopped", "NOT_RUNNING")


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--no-wait", is_flag=True, help="Do not wait for the processes to be RUNNING again.")
@click.pass_obj
@run_command
def restart(obj: Ctx, names, no_wait) -> int:
    """Stop then start processes (name, group:*, all)."""
    return _control(obj, "Restart", names, not no_wait, "restarted", "")


@cli.command("signal")
@click.argument("sig")
@click.argument("names", nargs=-1)
@click.pass_obj
@run_command
def signal_(obj: Ctx, sig: str, names) -> int:
    """Send signal SIG (HUP, SIGUSR1, 15 ...) to processes."""
    if not names:
        raise CommandError("name required: give process names, group:*, or all", 2)
    everything = "all" in names
    reply = obj.call("Signal", pb.SignalCommand(names=[n for n in names if n != "all"], all=everything,
                                                signal=sig))
    if obj.json:
        render.print_json([render.as_dict(r) for r in reply.results])
    else:
        render.command_results(reply.results, f"signalled")
    return EXIT_GENERIC if any(not r.ok for r in reply.results) else 0


# -- logs --------------------------------------------------------------------------------------

@cli.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what is appended.")
@click.option("--stderr", is_flag=True, help="The stderr log instead of stdout.")
@click.option("-n", "--bytes", "nbytes", type=int, default=1600, show_default=True, help="Last N bytes.")
@click.pass_obj
@run_command
def tail(obj: Ctx, name: str, follow: bool, stderr: bool, nbytes: int) -> None:
    """Print the end of a process's log; -f follows it (Ctrl-C to stop)."""
    request = pb.TailLogRequest(name=name, stream=pb.STDERR if stderr else pb.STDOUT, last_bytes=nbytes,
                                follow=follow)
    stream, chan = obj.call("TailLog", request, stream=True, timeout=None if follow else obj.settings.timeout)
    out = sys.stdout.buffer
    try:
        for chunk in stream:
            out.write(chunk.data)
            out.flush()
    except grpc.RpcError as exc:
        raise describe_rpc_error(exc, obj.node()) from None
    finally:
        chan.close()


# -- config ------------------------------------------------------------------------------------

@cli.group()
def config() -> None:
    """The fleet config revision applied on a node."""


@config.command("show")
@click.pass_obj
@run_command
def config_show(obj: Ctx) -> None:
    """The applied revision's text, id, and whether the node's own files were edited by hand."""
    reply = obj.call("GetConfig", pb.GetConfigRequest())
    if obj.json:
        render.print_json(render.as_dict(reply))
        return
    render.err.print(f"revision: {reply.revision or '(none applied)'}   node config: {reply.config_path}"
                     + ("   [yellow]node files edited by hand since load[/]" if reply.edited_by_hand else ""))
    sys.stdout.write(reply.config_text)


@config.command("apply")
@click.argument("file", type=click.File("r"))
@click.option("--dry-run", is_flag=True, help="Only show which groups would be added, changed, removed.")
@click.option("--revision", help="Revision id to record (default: local-<hash of the text>).")
@click.pass_obj
@run_command
def config_apply(obj: Ctx, file, dry_run: bool, revision: str | None) -> None:
    """Apply program-level sections from FILE on the node (restarts only changed groups)."""
    text = file.read()
    revision = revision or "local-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    reply = obj.call("ApplyConfig", pb.ApplyConfigRequest(revision=revision, config_text=text, dry_run=dry_run),
                     timeout=max(obj.settings.timeout, 600))
    if obj.json:
        render.print_json(render.as_dict(reply))
        return
    verb = "would be" if dry_run else ""
    for label, names in (("added", reply.added), ("changed", reply.changed), ("removed", reply.removed)):
        for name in names:
            render.out.print(f"{name}: {verb} {label}".replace("  ", " "))
    if not (reply.added or reply.changed or reply.removed):
        render.out.print("no group changes")
    if not dry_run:
        render.out.print(f"revision {reply.revision} applied")


cli.add_command(certs)


def main() -> None:
    cli(prog_name="fleetctl")


if __name__ == "__main__":
    main()
