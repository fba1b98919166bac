"""fleetctl's fleet mode: the same verbs as per-node mode, and the fleet-only commands, sent to
the controller.

The commands that exist in both modes are click commands in main.py that call the `run_*`
functions here in fleet mode; the fleet-only commands (nodes, audit, leader) are click
commands here, and the config revision commands live in fleetconfig.py; main.py registers them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from fleetvisor.v1 import agent_pb2 as pb
from fleetvisor.v1 import controller_pb2 as cpb

from . import fleetrender as view
from . import reconnect, render, summaryview
from .client import CommandError, NoController
from .context import Ctx, run_command
from .duration import DurationError, parse_duration, parse_since
from .exitcodes import STATUS_UNKNOWN, USAGE, control_code, status_code
from .group import F
from .patterns import parse_labels, parse_pattern, split_tail_target, status_patterns

ACTIONS = {"start": cpb.START, "stop": cpb.STOP, "restart": cpb.RESTART, "signal": cpb.SIGNAL}
PATTERN_HINT = "patterns are NODE, NODE:NAME or NODE:group:*, NODE a glob (e.g. *:app, web-*:workers:*), or all"

def label_option(what: str, *, shared: bool = False) -> Callable[[F], F]:
    """--label K=V, repeatable; `shared` commands also run per node, where it is refused."""
    where = "; fleet mode" if shared else ""
    return click.option("--label", "labels", multiple=True, metavar="K=V",
                        help=f"Only {what} whose labels match (repeatable; all must match{where}).")


# -- status ------------------------------------------------------------------------------------

STATES = frozenset(pb.ProcessState.keys()) - {"PROCESS_STATE_UNSPECIFIED"} | {"UNHEALTHY"}


@dataclass(frozen=True)
class StatusShape:
    """Which view of the fleet `status` asks for."""

    summary: bool | None = None  # True: --summary; False: --all; None: the summary above summary_above
    states: tuple[str, ...] = ()  # --state
    problems: bool = False  # --problems


def parse_states(values: Sequence[str]) -> tuple[str, ...]:
    """`--state FATAL,BACKOFF` (repeatable, any case) as statenames; an unknown one is a usage error."""
    states = tuple(dict.fromkeys(s.strip().upper() for v in values for s in v.split(",") if s.strip()))
    if unknown := [s for s in states if s not in STATES]:
        raise CommandError(f"--state: unknown state {', '.join(unknown)} (known: {', '.join(sorted(STATES))})",
                           USAGE)
    return states


def status_request(names: Sequence[str], labels: Sequence[str], shape: StatusShape,
                   summary_above: int) -> cpb.StatusRequest:
    """Without names or filters the controller decides by the selection's size (one round trip):
    the rows up to `summary_above` processes, the summary above."""
    request = cpb.StatusRequest(patterns=status_patterns(names), labels=parse_labels(labels),
                                states=list(shape.states), problems=shape.problems)
    if shape.summary:
        request.summary = True
    elif shape.summary is None and not names and not shape.states and not shape.problems:
        request.summary = True
        request.summary_above = summary_above
    return request


def run_status(obj: Ctx, names: Sequence[str], labels: Sequence[str], watch: bool,
               shape: StatusShape = StatusShape()) -> int:
    """GetStatus (or WatchStatus) for the patterns; exit 0/3/4 as supervisorctl status."""
    request = status_request(names, labels, shape, obj.settings.summary_above)
    if watch:
        return _watch(obj, request)
    try:
        reply = obj.controller().call("GetStatus", request)
    except CommandError as exc:
        # "no such node: app" is often a bare process name; no controller answering is not about names
        if exc.exit_code == STATUS_UNKNOWN and not isinstance(exc, NoController):
            raise CommandError(f"{exc} ({PATTERN_HINT})", STATUS_UNKNOWN) from None
        raise
    # on a terminal the view leaves a line for the prompt, so that its top is not scrolled away
    height = render.out.height - 1 if render.out.is_terminal else None
    render.show(obj.json, reply, lambda: _view(reply, height, request))
    _warn_stale(obj, reply.stale, reply.now)
    if request.labels and not (reply.summary.nodes if reply.HasField("summary") else reply.nodes):
        render.err.print(f"[red]error:[/] no node has labels {render.escape(view.labels_text(request.labels))}")
    return status_code(reply, bool(request.labels))


def _view(message: cpb.FleetStatus, height: int | None, request: cpb.StatusRequest) -> RenderableType:
    """The summary when the controller sent one, else the rows; `height` lines at most (None: all)."""
    if message.HasField("summary"):
        return summaryview.summary_view(message, width=render.out.width, height=height)
    return view.status_view(message, filtered=bool(request.states or request.problems))


def _watch(obj: Ctx, request: cpb.StatusRequest) -> int:
    """Redraw on every WatchStatus message until Ctrl-C, which is a normal way to stop (exit 0).

    Not on a terminal, each state is printed in turn (JSON: one object per line) so a pipe or
    a log file sees every change rather than only the last screen; a lost controller is then
    one line on stderr. On a terminal the note sits under the last view until it is live again,
    and the view is fitted to the window each time (never scrolled: a summary is cut to the
    height, and whatever else is too tall is cropped).
    """
    def messages(note: reconnect.Note) -> Iterator[cpb.FleetStatus]:
        return reconnect.reconnecting(obj.controller(), "WatchStatus", request, what="status stream",
                                      hint="Ctrl-C to stop", note=note)
    try:
        if obj.json:
            for message in messages(render.note_line):
                render.print_json_line(message)
        elif not render.out.is_terminal:
            for message in messages(render.note_line):
                _warn_stale(obj, message.stale, message.now)
                render.print_view(_view(message, None, request))
                sys.stdout.write("\n")
                sys.stdout.flush()
        else:
            with Live(console=render.out, auto_refresh=False, screen=False, vertical_overflow="crop") as live:
                last: list[RenderableType] = [Text("")]

                def show_note(note: Text | None) -> None:
                    live.update(Group(last[0], note) if note else last[0], refresh=True)

                for message in messages(show_note):
                    stale = view.stale_line(message.stale, message.now)
                    # the note line and the stale line take a line each; the cursor rests on the last
                    height = render.out.height - 1 - (stale is not None)
                    shown = _view(message, height, request)
                    last[0] = Group(stale, shown) if stale else shown
                    live.update(last[0], refresh=True)
    except KeyboardInterrupt:
        return 0
    raise AssertionError("unreachable: the watch loop only ends by Ctrl-C or an error")


# -- control -----------------------------------------------------------------------------------

def run_control(obj: Ctx, action: str, names: Sequence[str], labels: Sequence[str], wait: bool,
                sig: str = "") -> int:
    """One Control call for every matching node; exit 1 if a node failed, 7 if a process ended dead."""
    if not names:
        raise CommandError(f"name required: {PATTERN_HINT}", USAGE)
    for name in names:
        parse_pattern(name)
    request = cpb.ControlRequest(action=ACTIONS[action], patterns=list(names), labels=parse_labels(labels),
                                 signal=sig, wait=wait)
    reply = obj.controller().call("Control", request, timeout=max(obj.settings.timeout, 600))
    render.show(obj.json, reply, lambda: view.control_table(reply.nodes, action) if reply.nodes else None)
    if not reply.nodes:
        where = f" with labels {view.labels_text(request.labels)}" if request.labels else ""
        raise CommandError(f"no node matches {', '.join(names)}{where} ({PATTERN_HINT})")
    return control_code(reply.nodes, action)


# -- logs --------------------------------------------------------------------------------------

def run_tail(obj: Ctx, target: str, follow: bool, stderr: bool, nbytes: int) -> None:
    """`tail NODE:NAME`; with `follow`, across controller restarts and failovers: the stream is
    asked again from the file offset the last chunk ended at, so nothing is lost or repeated."""
    node, name = split_tail_target(target)
    channel = pb.STDERR if stderr else pb.STDOUT
    request = cpb.FleetTailRequest(node=node, request=pb.TailLogRequest(
        name=name, stream=channel, last_bytes=nbytes, follow=follow))
    if not follow:
        stream = obj.controller().stream("TailLog", request, timeout=obj.settings.timeout)
        try:
            render.write_log(stream, obj.json)
        finally:
            stream.close()
        return
    offset = 0

    def resumed() -> cpb.FleetTailRequest:
        return cpb.FleetTailRequest(node=node, request=pb.TailLogRequest(
            name=name, stream=channel, offset=offset, follow=True))

    def chunks() -> Iterator[pb.LogChunk]:
        nonlocal offset
        for chunk in reconnect.reconnecting(obj.controller(), "TailLog", request, what="log stream",
                                            hint="Ctrl-C to stop", note=render.note_line,
                                            fatal=(USAGE, STATUS_UNKNOWN), again=resumed, relayed=True):
            offset = chunk.offset
            yield chunk
    render.write_log(chunks(), obj.json)


# -- fleet-only top-level commands -------------------------------------------------------------

@click.group(invoke_without_command=True)
@label_option("nodes")
@click.pass_context
def nodes(ctx: click.Context, labels: tuple[str, ...]) -> None:
    """The nodes the controller knows: address, up, labels, version, revisions, last heartbeat,
    and a NOTE for a node the controller does not reconcile as usual (foreign, pinned, drift).

    \b
    Examples:
      fleetctl nodes --label role=web
      fleetctl nodes forget web-3      # a node that is gone for good
      fleetctl nodes adopt web-1 --keep
      fleetctl nodes pin web-1 -m "incident 4711"
    """
    if ctx.invoked_subcommand is None:
        _list_nodes(ctx.obj, labels)
    elif labels:
        raise click.UsageError(f"--label is for listing nodes, not for `nodes {ctx.invoked_subcommand}`")


@run_command
def _list_nodes(obj: Ctx, labels: tuple[str, ...]) -> None:
    reply = obj.controller("nodes").call("ListNodes", cpb.ListNodesRequest(labels=parse_labels(labels)))
    render.show(obj.json, reply, lambda: view.nodes_table(reply.nodes, time.time()))
    _warn_stale(obj, reply.stale, time.time())


def _warn_stale(obj: Ctx, stale: cpb.Staleness, now: float) -> None:
    """On stderr, so that what a script reads from stdout keeps its shape (JSON has the field)."""
    line = view.stale_line(stale, now)
    if line is not None and not obj.json:
        render.err.print(line)


@click.command()
@click.option("--since", metavar="DUR|TIME", help="Only entries newer than this: 30s, 10m, 2h, 1d, or an ISO time.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="The newest N entries (0: all).")
@click.pass_obj
@run_command
def audit(obj: Ctx, since: str | None, limit: int) -> None:
    """Who did what to the fleet, as the controller recorded it.

    \b
    Example:
      fleetctl audit --since 2h --limit 20
    """
    controller = obj.controller("audit")
    try:
        since_time = parse_since(since, time.time()) if since else 0.0
    except DurationError as exc:
        raise CommandError(f"--since: {exc}", USAGE) from None
    reply = controller.call("ListAudit", cpb.ListAuditRequest(since=since_time, limit=limit))
    render.show(obj.json, reply, lambda: view.audit_table(reply.entries))


@click.command()
@click.option("--controllers", "shares", is_flag=True,
              help="Also list the running controllers and how many agents' state streams each keeps.")
@click.pass_obj
@run_command
def leader(obj: Ctx, shares: bool) -> int:
    """Which controller leads (carries out writes); exit 1 while none does.

    Any controller of the list may answer: the one that answered is named too. The running
    controllers share the agents' state streams among them (each agent is followed by one);
    --controllers lists each one's share, as the answering controller sees it.

    \b
    Examples:
      fleetctl leader
      fleetctl --controller ctl-1:7400,ctl-2:7400,ctl-3:7400 leader --controllers
    """
    reply = obj.controller("leader").call("GetLeader", cpb.GetLeaderRequest())
    render.show(obj.json, reply, lambda: Group(view.leader_line(reply), view.shares_table(reply)) if shares
                else view.leader_line(reply))
    return 0 if reply.leader_id else 1


@click.command("dashboard-login")
@click.option("--ttl", default="1h", show_default=True, metavar="DUR",
              help="How long the login lasts: 30m, 2h ... (at most 12h).")
@click.option("--url", metavar="URL", help="The dashboard's address, when the controller does not serve it itself.")
@click.pass_obj
@run_command
def dashboard_login(obj: Ctx, ttl: str, url: str | None) -> None:
    """A link that logs a browser in to the fleet dashboard as you (your certificate's identity).

    The token is in the link's #fragment, which browsers do not send to servers or put in logs;
    the page trades it for a session cookie. Anyone with the link is you until it expires:
    do not paste it into chats or tickets.

    \b
    Example:
      fleetctl dashboard-login --ttl 2h
    """
    try:
        seconds = parse_duration(ttl)
    except DurationError as exc:
        raise CommandError(f"--ttl: {exc}", USAGE) from None
    reply = obj.controller("dashboard-login").call("MintDashboardToken", cpb.DashboardTokenRequest(ttl_seconds=seconds))
    base = url or reply.url
    if obj.json:
        render.show(obj.json, reply, lambda: "")
        return
    expires = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(reply.expires_at))
    if not base:
        raise CommandError("this controller serves no dashboard (--http-listen); pass --url with the "
                           "address of one that does")
    click.echo(f"{base.rstrip('/')}/#token={reply.token}")
    render.err.print(f"valid until {expires}; anyone with this link is you until then")


TOP_COMMANDS = (nodes, audit, leader, dashboard_login)
__all__ = ["TOP_COMMANDS", "StatusShape", "label_option", "parse_states", "run_control", "run_status", "run_tail"]
