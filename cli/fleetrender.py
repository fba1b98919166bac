"""How fleet-mode answers look: rich renderables built from the controller's messages.

Every function takes protobuf messages (and the time to measure ages against) and returns a
renderable or plain values; nothing here calls the controller or prints, so the views are
tested from hand-built messages and `--watch` redraws with the same code as one-shot status.
User data (names, errors, config text) goes into `Text` objects, never into markup: a
config's `[program:x]` is not a rich tag.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from .duration import format_age, format_ago, format_time
from .exitcodes import node_result_code
from .render import STATE_STYLE, fault_text, has_health, health_cell

if TYPE_CHECKING:
    from fleetvisor.v1 import agent_pb2 as pb
    from fleetvisor.v1 import controller_pb2 as cpb

STATE_ORDER = ("RUNNING", "STARTING", "BACKOFF", "STOPPING", "STOPPED", "EXITED", "FATAL", "UNKNOWN")
VERBS = {"start": "started", "stop": "stopped", "restart": "restarted", "signal": "signalled"}


def _table(*columns: str, wrap: Sequence[str] = ()) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=column not in wrap, overflow="fold")
    return table


def state_cell(statename: str) -> Text:
    return Text(statename, style=STATE_STYLE.get(statename, ""))


def yes_no(value: bool, *, good: bool = True) -> Text:
    """`yes`/`no`, green when the answer is the healthy one (`good`), red otherwise."""
    healthy = value == good
    return Text("yes" if value else "no", style="green" if healthy else "bold red")


def labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


# -- status ------------------------------------------------------------------------------------

def freshness(node: cpb.NodeInfo, now: float) -> str:
    """"live" while the controller's stream to the agent is connected; otherwise how old the
    cached state is, since that is what an operator must discount."""
    if node.reachable:
        return "live"
    if not node.state_as_of:
        return "no data"
    return f"stale {format_age(now - node.state_as_of)}"


def node_header(node: cpb.NodeInfo, now: float) -> Text:
    """One line per node: name, address, up/down, reachable, freshness, revision."""
    text = Text.assemble((node.name, "bold"), "  ", (node.address or "-", "dim"), "  ")
    if node.up:
        text.append("up", style="green")
    else:
        text.append(f"DOWN (last heartbeat {format_ago(node.last_heartbeat, now)})", style="bold red")
    text.append("  ")
    if node.reachable:
        text.append("reachable", style="green")
    else:
        text.append("UNREACHABLE", style="bold red")
    text.append("  ")
    text.append(freshness(node, now), style="green" if node.reachable else "yellow")
    text.append("  rev ")
    text.append(node.applied_revision or "-", style=revision_style(node))
    if node.desired_revision and node.desired_revision != node.applied_revision:
        text.append(f" (desired {node.desired_revision})", style="yellow")
    if node.edited_by_hand:
        text.append("  edited by hand", style="yellow")
    note = node_note(node)
    if note:
        text.append("  ")
        text.append(note)
    return text


def node_note(node: cpb.NodeInfo) -> Text:
    """What keeps the controller from reconciling the node as usual: foreign, pinned, drift."""
    text = Text()
    if node.foreign:
        text.append(f"FOREIGN: {node.foreign} (fleetctl nodes adopt {node.name} [--keep])", style="bold red")
    if node.pinned:
        text.append("  " if text else "")
        text.append(f"pinned by {node.pinned_by or '?'}", style="bold yellow")
    if node.local_revision:
        text.append("  " if text else "")
        text.append("drift: per-node revision" + ("" if node.pinned else ", reverted"), style="yellow")
    return text


def revision_style(node: cpb.NodeInfo) -> str:
    return "bold yellow" if node.desired_revision and node.desired_revision != node.applied_revision else ""


def stale_line(stale: cpb.Staleness, now: float) -> Text | None:
    """One warning line when the controller answered from its last copy because etcd is away."""
    if not stale.etcd_unavailable:
        return None
    when = f"as of {format_time(stale.as_of)} ({format_ago(stale.as_of, now)})" if stale.as_of else "not current"
    return Text.assemble(("warning: ", "bold yellow"),
                         f"stale: {stale.reason or 'etcd is unavailable'}; this is the controller's last copy, "
                         f"{when}")


def status_view(status: cpb.FleetStatus, *, filtered: bool = False) -> RenderableType:
    """The whole fleet: a header and process rows per node, then the summary line.

    Columns line up across nodes (widths from the longest name) so the eye can run down one
    STATE column; a node that is down or unreachable shows its last known processes dimmed.
    `filtered` (--state, --problems): a node without rows is there for its header (it is down,
    say), not because it has no processes.
    """
    now = status.now
    name_width = max((len(p.namespec or p.name) for n in status.nodes for p in n.processes), default=4)
    state_width = max((len(p.statename) for n in status.nodes for p in n.processes), default=5)
    health = has_health(p for n in status.nodes for p in n.processes)
    parts: list[RenderableType] = []
    for entry in status.nodes:
        node = entry.node
        parts.append(node_header(node, now))
        if node.error:
            parts.append(Padding(Text(node.error, style="red"), (0, 0, 0, 2), expand=False))
        table = Table(box=None, pad_edge=False, show_header=False)
        table.add_column("NAME", min_width=name_width, no_wrap=True)
        table.add_column("STATE", min_width=state_width, no_wrap=True)
        if health:
            table.add_column("HEALTH", min_width=len("unhealthy"), overflow="fold")
        table.add_column("DESCRIPTION", overflow="fold")
        dim = "dim" if not (node.up and node.reachable) else ""
        for p in entry.processes:
            table.add_row(Text(p.namespec or p.name), state_cell(p.statename),
                          *((health_cell(p),) if health else ()), Text(p.description), style=dim)
        if not entry.processes and not filtered:
            table.add_row(Text("(no processes)", style="dim"), *([""] * (3 if health else 2)))
        parts.append(Padding(table, (0, 0, 0, 2), expand=False))
    if not status.nodes:
        parts.append(Text("no nodes match", style="yellow"))
    parts.append(summary_text(summarize(status.nodes)))
    return Group(*parts)


@dataclass
class Summary:
    up: int = 0            # heartbeating and streaming: its state is live
    unreachable: int = 0   # this controller cannot stream from it (down or not)
    down: int = 0          # no heartbeat within the TTL
    states: Counter = field(default_factory=Counter)

    @property
    def processes(self) -> int:
        return sum(self.states.values())


def summarize(nodes: Iterable) -> Summary:
    """Counts for the summary line, as the node headers show them: a node whose header says
    DOWN and UNREACHABLE counts as both, so `down` and `unreachable` may overlap; `up` is a node
    that is neither."""
    summary = Summary()
    for entry in nodes:
        summary.down += not entry.node.up
        summary.unreachable += not entry.node.reachable
        summary.up += entry.node.up and entry.node.reachable
        summary.states.update(p.statename for p in entry.processes)
    return summary


def summary_text(summary: Summary) -> Text:
    text = Text.assemble(("nodes: ", "bold"), f"{summary.up} up, ")
    text.append(f"{summary.down} down", style="bold red" if summary.down else "")
    text.append(", ")
    text.append(f"{summary.unreachable} unreachable", style="bold red" if summary.unreachable else "")
    text.append("   ")
    text.append("processes: ", style="bold")
    text.append(str(summary.processes))
    known = [s for s in STATE_ORDER if summary.states.get(s)]
    others = sorted(s for s in summary.states if s not in STATE_ORDER)
    for i, state in enumerate(known + others):
        text.append(" (" if i == 0 else ", ")
        text.append(f"{summary.states[state]} {state}", style=STATE_STYLE.get(state, ""))
    if known or others:
        text.append(")")
    return text


# -- nodes -------------------------------------------------------------------------------------

def up_cell(node: cpb.NodeInfo) -> Text:
    if not node.up:
        return Text("DOWN", style="bold red")
    if not node.reachable:
        return Text("unreachable", style="bold red")
    return Text("up", style="green")


def nodes_table(nodes: Iterable, now: float) -> Table:
    """A NOTE column (foreign, pinned, drift) only when some node has one."""
    nodes = list(nodes)
    notes = [node_note(node) for node in nodes]
    extra = ("NOTE",) if any(notes) else ()
    table = _table("NAME", "ADDRESS", "UP", "LABELS", "AGENT", "APPLIED", "DESIRED", "HEARTBEAT", *extra,
                   wrap=("LABELS", *extra))
    for node, note in zip(nodes, notes, strict=True):
        style = revision_style(node)
        table.add_row(Text(node.name), Text(node.address or "-"), up_cell(node), Text(labels_text(node.labels)),
                      Text(node.agent_version or "-"), Text(node.applied_revision or "-", style=style),
                      Text(node.desired_revision or "-", style=style), Text(format_ago(node.last_heartbeat, now)),
                      *([note] if extra else []))
    return table


# -- control -----------------------------------------------------------------------------------

def process_outcome(result: pb.ProcessResult, action: str) -> Text:
    if result.ok:
        return Text(VERBS[action], style="green")
    return Text.assemble(("ERROR", "red"), f" ({fault_text(result.status)})")


def control_table(nodes: Iterable, action: str) -> Table:
    """One row per process result (node columns on its first row), or one row with the
    node's error when it could not be driven at all."""
    table = _table("NODE", "RESULT", "TIME", "PROCESS", "OUTCOME", wrap=("OUTCOME",))
    for node in nodes:
        failed = node_result_code(node, action) != 0
        result = Text("failed", style="bold red") if failed else Text("ok", style="green")
        first = [Text(node.node, style="bold"), result, Text(f"{node.seconds:.1f}s")]
        blank = [Text(""), Text(""), Text("")]
        rows: list[tuple[Text, Text]] = [(Text(r.name), process_outcome(r, action)) for r in node.results]
        if node.error:
            rows.append((Text("-"), Text(node.error, style="red")))
        if not rows:
            rows.append((Text("-"), Text("nothing matched on this node", style="dim")))
        for i, (name, outcome) in enumerate(rows):
            table.add_row(*(first if i == 0 else blank), name, outcome)
    return table


# -- config ------------------------------------------------------------------------------------

def assignment_text(assignment: cpb.Assignment) -> str:
    parts = []
    if assignment.nodes:
        parts.append("nodes " + ",".join(assignment.nodes))
    if assignment.labels:
        parts.append("labels " + labels_text(assignment.labels))
    return "; ".join(parts) or "-"


def push_line(reply: cpb.PushConfigResponse, dry_run: bool = False) -> Text:
    """`NAME revision N stored; targets: a, b`, or that nothing changed (or would be, for a dry run)."""
    rev = reply.revision
    targets = ", ".join(reply.target_nodes) or "(none)"
    if reply.unchanged:
        return Text(f"{rev.name} unchanged (revision {rev.revision} is current); targets: {targets}")
    rollback = f" (rollback to revision {rev.rollback_of})" if rev.rollback_of else ""
    stored = "would be stored" if dry_run else "stored"
    return Text(f"{rev.name} revision {rev.revision} {stored}{rollback}; targets: {targets}")


def deleted_line(reply: cpb.DeleteConfigResponse) -> Text:
    targets = ", ".join(reply.target_nodes) or "no node"
    return Text(f"config {reply.name} deleted (it was at revision {reply.last_revision}); "
                f"its programs are removed from {targets}")


def history_table(reply: cpb.ConfigHistoryResponse) -> Table:
    table = _table("REV", "TIME", "AUTHOR", "MESSAGE", "NOTE", wrap=("MESSAGE",))
    for rev in reply.revisions:
        notes = []
        if rev.rollback_of:
            notes.append(Text(f"rollback to {rev.rollback_of}", style="yellow"))
        if rev.revision == reply.current_revision:
            notes.append(Text("current", style="bold green"))
        if rev.withdrawn:
            notes.append(Text(f"withdrawn: {rev.withdrawn}", style="red"))
        table.add_row(Text(str(rev.revision), style="bold" if rev.revision == reply.current_revision else ""),
                      Text(format_time(rev.created_at)), Text(rev.author or "-"), Text(rev.message),
                      Text(", ").join(notes))
    return table


def configs_table(configs: Iterable, now: float) -> Table:
    table = _table("NAME", "REV", "ASSIGNMENT", "TARGETS", "UPDATED", wrap=("TARGETS",))
    for c in configs:
        table.add_row(Text(c.name, style="bold"), Text(str(c.current_revision)), Text(assignment_text(c.assignment)),
                      Text(", ".join(c.target_nodes) or "-"), Text(format_ago(c.updated_at, now)))
    return table


def config_status_table(nodes: Iterable) -> Table:
    table = _table("NODE", "UP", "DESIRED", "APPLIED", "IN SYNC", "EDITED BY HAND", "LAST ERROR", wrap=("LAST ERROR",))
    for n in nodes:
        error = Text(n.last_error, style="red") if n.last_error else Text("-" if not n.held else "")
        if n.last_error and n.attempts:
            error.append(f" ({n.attempts} failed attempt{'s' if n.attempts != 1 else ''})", style="dim")
        if n.held:
            error.append(("; " if n.last_error else "") + f"held: {n.held}", style="yellow")
        table.add_row(Text(n.node, style="bold"), yes_no(n.up), Text(n.desired_revision or "-"),
                      Text(n.applied_revision or "-", style="" if n.in_sync else "bold yellow"), yes_no(n.in_sync),
                      Text("yes", style="yellow") if n.edited_by_hand else Text("-"), error)
    return table


def revision_line(rev: cpb.ConfigRevision) -> Text:
    """What `config show` says about a revision, on stderr, so stdout stays the exact text."""
    text = Text(f"{rev.name} revision {rev.revision}  {format_time(rev.created_at)}  by {rev.author or '-'}")
    if rev.rollback_of:
        text.append(f"  (rollback to {rev.rollback_of})", style="yellow")
    if rev.message:
        text.append(f"  {rev.message}", style="dim")
    return text


# -- diff --------------------------------------------------------------------------------------

def diff_lines(old: str, new: str, old_label: str, new_label: str) -> list[str]:
    """A unified diff of two config texts, one string per line without line ends."""
    return list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_label, new_label, lineterm=""))


def diff_style(line: str) -> str:
    """git's colours: file headers bold, additions green, removals red, hunk headers cyan."""
    if line.startswith(("+++", "---")):
        return "bold"
    if line.startswith("@@"):
        return "cyan"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    return ""


def diff_text(lines: Iterable[str]) -> Text:
    """The diff's lines, coloured, joined by line ends (printing it ends the last one)."""
    return Text("\n").join(Text(line, style=diff_style(line)) for line in lines)


# -- audit and leader --------------------------------------------------------------------------

def audit_table(entries: Iterable) -> Table:
    table = _table("TIME", "WHO", "ACTION", "DETAIL", "RESULT", wrap=("WHO", "DETAIL", "RESULT"))
    for e in entries:
        result = Text("ok", style="green") if e.ok else Text("failed", style="bold red")
        if e.result:
            result.append(f" {e.result}", style="" if e.ok else "red")
        table.add_row(Text(format_time(e.time)), Text(e.who or "-"), Text(e.action, style="bold"),
                      Text(audit_detail(e.detail) or "-"), result)
    return table


def audit_detail(detail: str) -> str:
    """The arguments as `key=value` pairs, leaving out the empty ones (JSON is for -o json)."""
    try:
        args = json.loads(detail)
    except ValueError:
        return detail
    if not isinstance(args, dict):
        return detail
    parts = []
    for key, value in args.items():
        if value in (None, "", [], {}, False, 0):
            continue
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif value is True:
            value = "yes"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def shares_table(info: cpb.LeaderInfo) -> Table:
    """The running controllers and their shares of the agents' state streams."""
    table = Table(box=None, pad_edge=False)
    for column in ("CONTROLLER", "ADDRESS", "NODES", "STATE"):
        table.add_column(column, justify="right" if column == "NODES" else "left")
    for share in info.controllers:
        if share.id == info.controller_id:
            state = Text(f"answered; follows {info.followed_nodes}", style="dim")
        elif share.connected:
            state = Text("connected", style="green")
        else:
            state = Text(f"not connected: {share.error}", style="red")
        table.add_row(share.id, share.address, str(share.nodes), state)
    return table


def leader_line(info: cpb.LeaderInfo) -> Text:
    if not info.leader_id:
        return Text(f"no controller leads right now (asked {info.controller_id or 'a controller'})",
                    style="bold red")
    text = Text.assemble("leader: ", (info.leader_id, "bold"), f" at {info.leader_address or '?'}")
    answered = "the leader" if info.is_leader else f"follower {info.controller_id or '?'}"
    text.append(f"  (answered by {answered})", style="dim")
    return text
