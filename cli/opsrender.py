"""How fleet operations look: plans, live progress, per-node steps, and what to do when paused.

Everything here takes `Operation` messages (and the time to measure against) and returns
renderables, lines or numbers; nothing calls the controller or prints. So the views are tested
from hand-made messages, and the live view, the plain one-line-per-change log, `ops show` and
the exit status all read an operation the same way. User data (node names, reasons, errors)
goes into `Text`, never into markup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from fleetvisor.v1 import controller_pb2 as cpb

from .duration import format_ago, format_time
from .exitcodes import EXIT_GENERIC
from .fleetrender import labels_text

INTERRUPTED = 130  # Ctrl-C while the operation still runs: its outcome is not known here

ENDED = frozenset({cpb.OP_SUCCEEDED, cpb.OP_FAILED, cpb.OP_ABORTED})
# steps that will not change again: what the progress bars count as finished
SETTLED = frozenset({cpb.STEP_DONE, cpb.STEP_FAILED, cpb.STEP_REVERTED, cpb.STEP_SKIPPED})
BAD_STEPS = frozenset({cpb.STEP_FAILED, cpb.STEP_REVERTED})

OP_WORD = {cpb.OP_RUNNING: "running", cpb.OP_PAUSED: "paused", cpb.OP_SUCCEEDED: "succeeded",
           cpb.OP_FAILED: "failed", cpb.OP_ABORTED: "aborted"}
OP_STYLE = {cpb.OP_RUNNING: "cyan", cpb.OP_PAUSED: "bold yellow", cpb.OP_SUCCEEDED: "green",
            cpb.OP_FAILED: "bold red", cpb.OP_ABORTED: "bold red"}
STEP_WORD = {cpb.STEP_PENDING: "pending", cpb.STEP_ACTING: "acting", cpb.STEP_WAITING: "waiting",
             cpb.STEP_DONE: "done", cpb.STEP_FAILED: "failed", cpb.STEP_REVERTED: "reverted",
             cpb.STEP_SKIPPED: "skipped"}
STEP_STYLE = {cpb.STEP_PENDING: "dim", cpb.STEP_ACTING: "cyan", cpb.STEP_WAITING: "yellow",
              cpb.STEP_DONE: "green", cpb.STEP_FAILED: "bold red", cpb.STEP_REVERTED: "bold yellow",
              cpb.STEP_SKIPPED: "dim"}
KIND_WORD = {cpb.ROLLING_RESTART: "rolling restart", cpb.CONFIG_ROLLOUT: "config rollout",
             cpb.AGENT_UPGRADE: "rolling agent upgrade"}
ON_FAILURE_WORD = {cpb.ON_FAILURE_UNSPECIFIED: "pause", cpb.PAUSE: "pause", cpb.ABORT: "abort",
                   cpb.CONTINUE: "continue"}
FULL_TABLE_NODES = 30  # above this many nodes the live table shows only the ones worth a look


def op_word(state: cpb.OperationState) -> str:
    return OP_WORD.get(state, "unknown")


def step_word(state: cpb.NodeStepState) -> str:
    return STEP_WORD.get(state, "unknown")


def state_cell(state: cpb.OperationState) -> Text:
    return Text(op_word(state), style=OP_STYLE.get(state, ""))


def step_cell(state: cpb.NodeStepState) -> Text:
    return Text(step_word(state), style=STEP_STYLE.get(state, ""))


def is_ended(op: cpb.Operation) -> bool:
    return op.state in ENDED


def format_seconds(seconds: float) -> str:
    """Spans as typed on the command line: `5s`, `2m`, `1m30s`, `1h5m`; tenths below 10s (`0.2s`)."""
    if seconds < 10 and round(seconds, 1) != int(seconds):
        return f"{round(seconds, 1):g}s"
    if seconds < 60:
        return f"{round(seconds)}s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)


# -- what an operation is ----------------------------------------------------------------------

def selector_text(assignment: cpb.Assignment, everything: str = "every node with the group") -> str:
    if assignment.nodes:
        return "nodes " + ",".join(assignment.nodes)
    if assignment.labels:
        return "labels " + labels_text(assignment.labels)
    return everything


def target_text(spec: cpb.OperationSpec) -> str:
    """`group app on labels role=web` or `config web revision 4 (from 3)`."""
    if spec.kind == cpb.CONFIG_ROLLOUT:
        text = f"config {spec.config_name} revision {spec.config_revision}"
        return text + (f" (from {spec.previous_revision})" if spec.previous_revision else " (first revision)")
    if spec.kind == cpb.AGENT_UPGRADE:
        version = spec.expect_version or "the installed agent's version"
        return f"the agent on {selector_text(spec.selector, 'every node')} to {version}"
    return f"group {spec.group} on {selector_text(spec.selector)}"


def pacing_text(spec: cpb.OperationSpec) -> str:
    """How fast it goes and what stops it, in the options' own words."""
    if spec.batch:
        size = f"batches of {spec.batch}"
    else:
        size = f"at most {spec.max_unavailable or '1'} unavailable"
    parts = [size, f"healthy for {format_seconds(spec.healthy_for_seconds)}",
             f"timeout {format_seconds(spec.timeout_seconds)} per batch",
             f"on failure {ON_FAILURE_WORD.get(spec.on_failure, 'pause')}"]
    if spec.canary:
        parts.append(f"canary {spec.canary}")
    if spec.auto_revert:
        parts.append("auto-revert")
    return ", ".join(parts)


def title(op: cpb.Operation) -> Text:
    """`rolling restart of group app on ... · op-7 · running`."""
    text = Text.assemble((KIND_WORD.get(op.spec.kind, "operation"), "bold"), " of ", target_text(op.spec))
    if op.id:
        text.append("  ")
        text.append(op.id, style="bold")
    if op.state:
        text.append("  ")
        text.append_text(state_cell(op.state))
    return text


def all_steps(op: cpb.Operation) -> Iterable[tuple[int, cpb.NodeStep]]:
    """Every node step with its batch's index, in plan order."""
    for index, batch in enumerate(op.batches):
        for step in batch.nodes:
            yield index, step


def is_canary_batch(op: cpb.Operation, index: int) -> bool:
    """The controller runs the first `canary` nodes of a rollout as batch 1, then pauses."""
    return index == 0 and op.spec.kind == cpb.CONFIG_ROLLOUT and op.spec.canary > 0


def plan_view(op: cpb.Operation) -> RenderableType:
    """The ordered batches a (dry-run) operation will take, one line per batch."""
    total = sum(len(b.nodes) for b in op.batches)
    lines: list[RenderableType] = [
        Text.assemble(("plan: ", "bold"), KIND_WORD.get(op.spec.kind, "operation"), " of ", target_text(op.spec),
                      f", {total} node{'s' if total != 1 else ''} in {len(op.batches)} "
                      f"batch{'es' if len(op.batches) != 1 else ''}"),
        Text(f"      {pacing_text(op.spec)}", style="dim")]
    width = len(str(len(op.batches)))
    for index, batch in enumerate(op.batches):
        line = Text(f"  batch {index + 1:>{width}}: ", style="bold")
        line.append(", ".join(step.node for step in batch.nodes) or "(no nodes)")
        if is_canary_batch(op, index):
            line.append("  (canary: then pause until promoted)", style="yellow")
        lines.append(line)
    if not op.batches:
        lines.append(Text("  nothing to do: no node matches", style="yellow"))
    if op.spec.kind == cpb.AGENT_UPGRADE:
        lines.append(Text("  gate per node: the agent back with the same pid and the expected version, every "
                          "process with the same pid and state, for "
                          f"{format_seconds(op.spec.healthy_for_seconds)}", style="dim"))
    for group, gate in sorted(op.gates.items()):
        wanted = "healthy by its health check" if gate == "health check" else "RUNNING"
        lines.append(Text(f"  gate for {group}: every process {wanted} for "
                          f"{format_seconds(op.spec.healthy_for_seconds)}", style="dim"))
    return Group(*lines)


# -- progress ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Counts:
    """Where an operation is, as the bars and the summary lines count it."""

    total: int
    done: int
    failed: int         # failed or reverted
    skipped: int
    batch: int          # index of the batch being worked on (clamped to the plan)
    batches: int
    batch_total: int
    batch_settled: int

    @property
    def settled(self) -> int:
        return self.done + self.failed + self.skipped


def current_batch(op: cpb.Operation) -> int:
    """The batch being worked on; the controller may point one past the end once it is done."""
    if not op.batches:
        return 0
    return min(max(op.current_batch, 0), len(op.batches) - 1)


def counts(op: cpb.Operation) -> Counts:
    states = [step.state for _, step in all_steps(op)]
    index = current_batch(op)
    batch = op.batches[index].nodes if op.batches else []
    return Counts(total=len(states), done=states.count(cpb.STEP_DONE),
                  failed=sum(1 for s in states if s in BAD_STEPS), skipped=states.count(cpb.STEP_SKIPPED),
                  batch=index, batches=len(op.batches), batch_total=len(batch),
                  batch_settled=sum(1 for step in batch if step.state in SETTLED))


def counts_text(c: Counts) -> str:
    """`4/6 done, 1 failed, 1 skipped`."""
    parts = [f"{c.done}/{c.total} done"]
    if c.failed:
        parts.append(f"{c.failed} failed")
    if c.skipped:
        parts.append(f"{c.skipped} skipped")
    return ", ".join(parts)


def canary_nodes(op: cpb.Operation) -> list[str]:
    """The canary's nodes when the operation is paused because its canary is up, else [].

    A canary pause is the planned stop after batch 1 of a rollout: every canary node done and
    nothing after it started. A pause with a failed canary node is a failure, not a promotion.
    """
    if op.state != cpb.OP_PAUSED or not op.batches or not is_canary_batch(op, 0):
        return []
    first = op.batches[0].nodes
    if not first or any(step.state != cpb.STEP_DONE for step in first):
        return []
    if any(step.state != cpb.STEP_PENDING for batch in op.batches[1:] for step in batch.nodes):
        return []
    return [step.node for step in first]


def paused_text(op: cpb.Operation) -> Text:
    """Why it is paused and the two ways on; a canary pause is worded as the promotion it awaits."""
    canary = canary_nodes(op)
    if canary:
        return Text.assemble(("canary on ", "bold yellow"), (", ".join(canary), "bold"),
                             (" is up; promote with: ", "bold yellow"), f"fleetctl ops resume {op.id}",
                             (", or: ", "bold yellow"), f"fleetctl ops abort {op.id}")
    return Text.assemble(("paused: ", "bold yellow"), op.reason or "(no reason given)", " — ",
                         f"fleetctl ops resume {op.id}", " | ", f"fleetctl ops abort {op.id}")


def outcome_text(op: cpb.Operation) -> Text:
    """The last line of a watch: how it ended, or where it stands when the watch stopped."""
    c = counts(op)
    name = f"operation {op.id}" if op.id else "operation"
    if op.state == cpb.OP_PAUSED:
        return paused_text(op)
    text = Text.assemble(name, " ", state_cell(op.state), f": {counts_text(c)}")
    if op.state == cpb.OP_SUCCEEDED and op.created_at and op.updated_at:
        text.append(f" in {format_seconds(max(0.0, op.updated_at - op.created_at))}")
    if op.reason and op.state != cpb.OP_SUCCEEDED:
        text.append(" — ")
        text.append(op.reason, style="red" if op.state in (cpb.OP_FAILED, cpb.OP_ABORTED) else "")
    bad = [step.node for _, step in all_steps(op) if step.state in BAD_STEPS]
    if bad:
        text.append(f" (failed: {', '.join(bad)})", style="red")
    return text


def exit_code(op: cpb.Operation, *, interrupted: bool = False) -> int:
    """0 only for SUCCEEDED; FAILED, ABORTED and PAUSED are 1 (a paused operation has not done
    what was asked, and a script must not go on as if it had); Ctrl-C while it still runs is
    130, since its outcome is unknown, not bad."""
    if op.state == cpb.OP_SUCCEEDED:
        return 0
    if op.state == cpb.OP_RUNNING and interrupted:
        return INTERRUPTED
    return EXIT_GENERIC


# -- per-node steps ----------------------------------------------------------------------------

def step_timing(step: cpb.NodeStep, spec: cpb.OperationSpec, now: float) -> str:
    """What the clock says about one step: how long it took, or how long it has been at it."""
    if step.state == cpb.STEP_DONE and step.started_at and step.done_at:
        return f"took {format_seconds(max(0.0, step.done_at - step.started_at))}"
    if step.state == cpb.STEP_WAITING:
        if step.healthy_at:
            return (f"healthy {format_seconds(max(0.0, round(now - step.healthy_at)))}"
                    f"/{format_seconds(spec.healthy_for_seconds)}")
        return "not healthy yet" + (f" ({format_ago(step.started_at, now)})" if step.started_at else "")
    if step.state == cpb.STEP_ACTING and step.started_at:
        return f"since {format_ago(step.started_at, now)}"
    if step.state in BAD_STEPS and step.started_at and step.done_at:
        return f"after {format_seconds(max(0.0, step.done_at - step.started_at))}"
    return ""


def visible_steps(op: cpb.Operation, limit: int = FULL_TABLE_NODES) -> tuple[list[tuple[int, cpb.NodeStep]], int]:
    """The steps the live table shows, and how many it leaves out.

    Small operations show every node; large ones the current batch and every failed node, since
    a thousand "pending" rows would push what matters off the screen.
    """
    steps = list(all_steps(op))
    if len(steps) <= limit:
        return steps, 0
    index = current_batch(op)
    shown = [(i, step) for i, step in steps if i == index or step.state in BAD_STEPS]
    return shown, len(steps) - len(shown)


def steps_table(op: cpb.Operation, now: float, steps: Sequence[tuple[int, cpb.NodeStep]] | None = None, *,
                started: bool = False) -> Table:
    """One row per node step; `started` adds the wall-clock time the action was sent (ops show)."""
    upgrade = op.spec.kind == cpb.AGENT_UPGRADE
    columns = ("BATCH", "NODE", "STEP") + (("STARTED",) if started else ()) + ("TIME",) + (("AGENT",) if upgrade
                                                                                         else ()) + ("ERROR",)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, no_wrap=column != "ERROR", overflow="fold")
    for index, step in (all_steps(op) if steps is None else steps):
        batch = Text(str(index + 1), style="bold" if index == current_batch(op) and not is_ended(op) else "")
        if is_canary_batch(op, index):
            batch.append(" canary", style="yellow")
        cells = [batch, Text(step.node), step_cell(step.state)]
        if started:
            cells.append(Text(format_time(step.started_at)))
        cells.append(Text(step_timing(step, op.spec, now)))
        if upgrade:
            cells.append(Text(agent_versions(step)))
        cells.append(Text(step.error, style="red") if step.error else Text(""))
        table.add_row(*cells)
    return table


# -- the live view -----------------------------------------------------------------------------

class LiveView:
    """What the terminal shows while watching: title, two bars, the node table, a status line.

    Rebuilt from the last `Operation` on every refresh (`__rich__`), so the ages in the table
    tick between messages; the bars are one rich Progress whose two tasks are moved to the
    counts of each new message, never advanced locally.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.op: cpb.Operation | None = None
        self.note: Text | None = None  # a connection problem, shown until the next message
        self.progress = Progress(TextColumn("{task.description}", style="bold"), BarColumn(bar_width=40),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), auto_refresh=False)
        self.overall: TaskID = self.progress.add_task("nodes", total=1, detail="")
        self.batch: TaskID = self.progress.add_task("batch", total=1, detail="")

    def update(self, op: cpb.Operation) -> None:
        self.op, self.note = op, None
        c = counts(op)
        self.progress.update(self.overall, total=max(c.total, 1), completed=c.settled, detail=counts_text(c))
        self.progress.update(self.batch, description=f"batch {c.batch + 1}/{max(c.batches, 1)}",
                             total=max(c.batch_total, 1), completed=c.batch_settled,
                             detail="canary" if is_canary_batch(op, c.batch) else "")

    def __rich__(self) -> RenderableType:
        if self.op is None:
            return self.note or Text("waiting for the controller ...", style="dim")
        op = self.op
        steps, hidden = visible_steps(op)
        parts: list[RenderableType] = [title(op), self.progress.get_renderable(), steps_table(op, self.clock(), steps)]
        if hidden:
            parts.append(Text(f"... and {hidden} more nodes not shown (fleetctl ops show {op.id})", style="dim"))
        if op.state == cpb.OP_PAUSED:
            parts.append(paused_text(op))
        elif op.reason and not is_ended(op):
            parts.append(Text(op.reason, style="yellow"))
        if self.note is not None:
            parts.append(self.note)
        return Group(*parts)


# -- the plain log: one line per change --------------------------------------------------------

def _stamp(op: cpb.Operation) -> str:
    return format_time(op.updated_at)[-8:] + " " if op.updated_at else ""


def agent_versions(step: cpb.NodeStep) -> str:
    """An agent upgrade's step: `0.1.0 -> 0.2.0`, or `0.1.0 -> 0.2.0?` while only expected."""
    if not step.agent_version_before:
        return ""
    after = step.agent_version_after or (f"{step.agent_version_expected}?" if step.agent_version_expected else "?")
    return f"{step.agent_version_before} -> {after}"


def step_line(step: cpb.NodeStep, spec: cpb.OperationSpec) -> str:
    line = f"{step.node}: {step_word(step.state)}"
    if step.state == cpb.STEP_WAITING and spec.healthy_for_seconds:
        line += f" (to stay healthy for {format_seconds(spec.healthy_for_seconds)})"
    elif step.state == cpb.STEP_DONE and step.started_at and step.done_at:
        line += f" (took {format_seconds(max(0.0, step.done_at - step.started_at))})"
    if step.agent_version_after:
        line += f" (agent {agent_versions(step)})"
    if step.error:
        line += f": {step.error}"
    return line


def change_lines(prev: cpb.Operation | None, cur: cpb.Operation) -> list[Text]:
    """What changed from `prev` to `cur`, one line each, for output that is not a terminal.

    The first message reports the state and every step already under way; terminal states are
    left to `outcome_text`, which the watch prints once at the end whatever the output.
    """
    stamp = _stamp(cur)
    lines: list[Text] = []
    if prev is None or prev.state != cur.state:
        if cur.state == cpb.OP_PAUSED:
            lines.append(Text(stamp) + paused_text(cur))
        elif cur.state == cpb.OP_RUNNING:
            resumed = prev is not None and prev.state == cpb.OP_PAUSED
            lines.append(Text(f"{stamp}operation {cur.id} {'resumed' if resumed else 'running'}"))
    index = current_batch(cur)
    if cur.batches and not is_ended(cur) and (prev is None or current_batch(prev) != index):
        nodes = ", ".join(step.node for step in cur.batches[index].nodes)
        canary = " (canary)" if is_canary_batch(cur, index) else ""
        lines.append(Text(f"{stamp}batch {index + 1}/{len(cur.batches)}{canary}: {nodes}"))
    before = {step.node: step for _, step in all_steps(prev)} if prev is not None else {}
    for _, step in all_steps(cur):
        old = before.get(step.node)
        if old is None and step.state == cpb.STEP_PENDING:
            continue
        if old is not None and old.state == step.state and old.error == step.error:
            continue
        lines.append(Text(stamp + step_line(step, cur.spec), style=STEP_STYLE.get(step.state, "")
                          if step.state in BAD_STEPS else ""))
    return lines


# -- ops list and ops show ---------------------------------------------------------------------

def short_target(spec: cpb.OperationSpec) -> str:
    """The kind and its object in one cell: `restart app`, `rollout web@4`."""
    if spec.kind == cpb.CONFIG_ROLLOUT:
        return f"rollout {spec.config_name}@{spec.config_revision}"
    if spec.kind == cpb.AGENT_UPGRADE:
        return f"upgrade agent{' to ' + spec.expect_version if spec.expect_version else ''}"
    return f"restart {spec.group}"


def operations_table(operations: Iterable[cpb.Operation], now: float) -> Table:
    """`ops list`: narrow enough for 80 columns; who started it and the rest are in `ops show`."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "WHAT", "STATE", "PROGRESS", "BATCH", "STARTED", "REASON"):
        table.add_column(column, no_wrap=column != "REASON", overflow="fold")
    for op in operations:
        c = counts(op)
        batch = "-" if not c.batches or is_ended(op) else f"{c.batch + 1}/{c.batches}"
        table.add_row(Text(op.id, style="bold"), Text(short_target(op.spec)), state_cell(op.state),
                      Text(counts_text(c)), Text(batch), Text(format_ago(op.created_at, now)),
                      Text(op.reason or "-", style="" if op.state == cpb.OP_SUCCEEDED else "yellow"))
    return table


def detail_view(op: cpb.Operation, now: float) -> RenderableType:
    """`ops show`: what was asked, where it stands, and every node's step."""
    fields: list[tuple[str, Text]] = [
        ("id", Text(op.id, style="bold")),
        ("kind", Text(KIND_WORD.get(op.spec.kind, "?"))),
        ("target", Text(target_text(op.spec))),
        ("pacing", Text(pacing_text(op.spec))),
        ("state", state_cell(op.state) + Text(f"  {counts_text(counts(op))}")),
    ]
    if op.reason:
        fields.append(("reason", Text(op.reason, style="yellow")))
    fields += [("author", Text(op.author or "-")), ("message", Text(op.message or "-")),
               ("created", Text(f"{format_time(op.created_at)} ({format_ago(op.created_at, now)})")),
               ("updated", Text(f"{format_time(op.updated_at)} ({format_ago(op.updated_at, now)})")),
               ("controller", Text(op.controller_id or "-"))]
    width = max(len(key) for key, _ in fields)
    parts: list[RenderableType] = [Text.assemble((f"{key:>{width}}", "bold"), "  ", value) for key, value in fields]
    parts.append(Text(""))
    if op.batches:
        parts.append(steps_table(op, now, started=True))
    else:
        parts.append(Text("no nodes in the plan", style="yellow"))
    if op.state == cpb.OP_PAUSED:
        parts += [Text(""), paused_text(op)]
    return Group(*parts)
