"""`fleetctl status` summary-first: the controller's FleetSummary as one screen (issue 18).

One line per group (RUNNING/total across nodes, then the other states with counts and the
nodes where they are, cut to the width with "+N more"), then the problems, worst first, cut
to the height with a line saying how many more there are. Like fleetrender.py this only
builds renderables from messages, so the one-shot view, `--watch` and the tests share it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .duration import format_ago
from .render import STATE_STYLE

if TYPE_CHECKING:
    from fleetvisor.v1 import controller_pb2 as cpb

# The order states are named in a group's line: what needs a person first.
STATE_ORDER = ("FATAL", "UNKNOWN", "BACKOFF", "EXITED", "UNHEALTHY", "UNREACHABLE", "STARTING", "STOPPING",
               "STOPPED")
EXTRA_STYLE = {"UNHEALTHY": "bold yellow", "UNREACHABLE": "bold red", "DOWN": "bold red", "DRIFT": "yellow",
               "EDITED": "yellow", "FOREIGN": "bold red", "OP_PAUSED": "bold yellow", "OP_FAILED": "bold red"}
# Problem.Kind -> the word in the STATE column, where the problem is not a process's state.
KIND_WORD = {1: "DOWN", 2: "UNREACHABLE", 4: "DRIFT", 5: "EDITED", 6: "FOREIGN"}
MORE_HINT = "fleetctl status --problems"


def style_of(state: str) -> str:
    return STATE_STYLE.get(state) or EXTRA_STYLE.get(state, "")


def headline(s: cpb.FleetSummary) -> Text:
    text = Text.assemble(("nodes: ", "bold"), f"{s.nodes_up}/{s.nodes} up")
    if s.nodes_reachable < s.nodes:
        text.append(f", {s.nodes - s.nodes_reachable} unreachable", style="bold red")
    text.append("   ")
    text.append("processes: ", style="bold")
    text.append(f"{s.running}/{s.processes} RUNNING", style="green" if s.running == s.processes else "")
    text.append("   ")
    text.append("problems: ", style="bold")
    text.append(str(s.problems_total), style="bold red" if s.problems_total else "green")
    return text


def _ordered(states: list[cpb.StateCount]) -> list[cpb.StateCount]:
    rank = {name: i for i, name in enumerate(STATE_ORDER)}
    return sorted(states, key=lambda c: (rank.get(c.state, len(rank)), c.state))


def _nodes_part(count: cpb.StateCount, room: int) -> str:
    """"(a, b, +3 more)" in at most `room` characters, as many names as fit; "(4 nodes)" when no
    name does, and "" when not even that fits."""
    total = max(count.nodes_total, len(count.nodes))
    shown: list[str] = []
    for name in count.nodes:
        more = total - len(shown) - 1
        candidate = ", ".join([*shown, name]) + (f", +{more} more" if more else "")
        if len(candidate) + 2 > room:
            break
        shown.append(name)
    more = total - len(shown)
    part = ("(" + ", ".join(shown) + (f", +{more} more" if more else "") + ")" if shown
            else f"({total} node{'s' if total != 1 else ''})")
    return part if len(part) <= room else ""


def group_line(g: cpb.GroupSummary, name_width: int, width: int) -> Text:
    """`app  18/20 RUNNING  FATAL 1 (web-3)  STOPPED 1 (db-1)`, at most `width` wide: the node
    lists give way first, the first states (the worst) keeping theirs longest; every state keeps
    its count."""
    text = Text(g.group.ljust(name_width), style="bold")
    text.append("  ")
    text.append(f"{g.running}/{g.total} RUNNING", style="green" if g.running == g.total else "")
    states = _ordered(list(g.states))
    heads = [len(f"  {c.state} {c.count}") for c in states]
    for i, count in enumerate(states):
        text.append("  ")
        text.append(f"{count.state} {count.count}", style=style_of(count.state))
        part = _nodes_part(count, width - len(text) - 1 - sum(heads[i + 1:]))
        if part:
            text.append(" ")
            text.append(part, style="dim")
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def problem_word(p: cpb.Problem) -> str:
    return KIND_WORD.get(p.kind, p.state)


def problems_table(problems: list[cpb.Problem], now: float) -> Table:
    """One line per problem: the short columns keep their width, the detail gives way."""
    rows = [(problem_word(p), p.node or "-", p.subject or "-", format_ago(p.since, now) if p.since else "-", p.detail)
            for p in problems]
    table = Table(box=None, pad_edge=False, show_header=False, padding=(0, 2, 0, 0))
    for i in range(4):
        table.add_column(no_wrap=True, min_width=max((len(r[i]) for r in rows), default=1))
    table.add_column(no_wrap=True, overflow="ellipsis")
    for word, node, subject, since, detail in rows:
        table.add_row(Text(word, style=style_of(word)), Text(node, style="bold"), Text(subject),
                      Text(since, style="dim"), Text(detail))
    return table


def summary_view(status: cpb.FleetStatus, *, width: int, height: int | None = None) -> RenderableType:
    """The summary in `width` columns and, on a terminal, `height` lines (None: every group and
    every problem the controller sent)."""
    s = status.summary
    if not s.nodes:
        return Text("no nodes match", style="yellow")
    groups = list(s.groups)
    problems = list(s.problems)
    shown_groups, shown_problems = fit(len(groups), len(problems), s.problems_total, height)
    name_width = max((len(g.group) for g in groups[:shown_groups]), default=0)
    parts: list[RenderableType] = [headline(s)]
    parts += [group_line(g, name_width, width) for g in groups[:shown_groups]]
    if shown_groups < len(groups):
        parts.append(Text(f"... {len(groups) - shown_groups} more groups, all RUNNING"
                          if not any(g.problems for g in groups[shown_groups:])
                          else f"... {len(groups) - shown_groups} more groups", style="dim"))
    if s.problems_total:
        parts.append(Text(f"PROBLEMS ({s.problems_total})", style="bold red"))
        parts.append(problems_table(problems[:shown_problems], status.now))
        hidden = s.problems_total - shown_problems
        if hidden:
            parts.append(Text(f"... {hidden} more problem{'s' if hidden != 1 else ''}: {MORE_HINT}",
                              style="yellow"))
    return Group(*parts)


def fit(groups: int, problems: int, total: int, height: int | None) -> tuple[int, int]:
    """How many group lines and problem lines fit in `height` lines, counting the headline, the
    PROBLEMS title and the "more" line of each list that is cut. The problems come first, but
    the groups keep a few lines (the ones with problems are on top) and get what is left."""
    if height is None:
        return groups, problems
    room = max(height - 1, 1)  # the headline

    def lines(g: int, p: int) -> int:
        return g + (g < groups) + (1 if total else 0) + p + (p < total)

    g, p = min(groups, 3), problems
    while p > 0 and lines(g, p) > room:
        p -= 1
    while g < groups and lines(g + 1, p) <= room:
        g += 1
    while g > 0 and lines(g, p) > room:
        g -= 1
    return g, p
