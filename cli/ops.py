"""fleetctl's fleet operations: `rolling-restart`, `rolling-upgrade`, the `ops` group, and
the watch they share with `config push --rolling`.

An operation is durable and runs in the controller's leader, not in fleetctl: fleetctl starts
it, then only watches. So Ctrl-C (or `--detach`) leaves it running, a watch that loses the
controller reconnects (a new leader resumes the operation where the old one stopped), and
`fleetctl ops watch ID` from any terminal shows the same thing as the command that started it.

A paused operation keeps the watch open: it may be resumed or aborted from elsewhere (a canary
is promoted with `ops resume`), and the watch then goes on to the end. The operator who wants
the prompt back presses Ctrl-C; the status is then 1 (paused is not done).

Exit status: 0 the operation succeeded (or only a plan, or --detach), 1 it failed, was
aborted or is paused, 2 a usage error, 4 no such operation, 130 Ctrl-C while it runs.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click
from google.protobuf.message import Message
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from fleetvisor.v1 import controller_pb2 as cpb

from . import opsrender as view
from . import reconnect, render
from .client import CommandError
from .context import Ctx, run_command
from .exitcodes import STATUS_UNKNOWN, USAGE
from .fleet import label_option
from .opsargs import (
    DEFAULT_HEALTHY_FOR,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_TIMEOUT,
    ON_FAILURE,
    RolloutArgs,
    operation_id,
    restart_spec,
    upgrade_spec,
)

EXIT_STATUS_HELP = ("Exit status: 0 succeeded (or --dry-run, --detach), 1 failed, aborted or paused, "
                    "2 usage, 130 Ctrl-C while it runs (it goes on).")


# -- options shared by rolling-restart and config push --rolling -------------------------------

def rollout_options(*, config: bool) -> Callable:
    """The pacing options, handed to the command as one `rollout: RolloutArgs`.

    One definition keeps the two commands' options identical; `config=True` adds the ones only a
    config rollout has (--rolling, --canary, --auto-revert). Values stay raw (None: not given):
    they are checked by opsargs inside the command, where a refusal is a one-line error.
    """
    names: tuple[str, ...] = ("batch", "max_unavailable", "healthy_for", "batch_timeout", "on_failure", "detach")
    names += ("rolling", "canary", "auto_revert") if config else ()
    options = [
        click.option("--batch", type=int, metavar="N", help="N nodes per batch (instead of --max-unavailable)."),
        click.option("--max-unavailable", metavar="N|P%",
                     help=f"At most N nodes, or P% of them, down at once [default: {DEFAULT_MAX_UNAVAILABLE}]."),
        click.option("--healthy-for", metavar="DUR",
                     help=f"Every process RUNNING this long before the next batch [default: {DEFAULT_HEALTHY_FOR}]."),
        click.option("--timeout", "batch_timeout", metavar="DUR",
                     help=f"Give up on a batch after this long [default: {DEFAULT_TIMEOUT}]."),
        click.option("--on-failure", type=click.Choice(list(ON_FAILURE)),
                     help="What a failed node does to the operation [default: pause]."),
        click.option("--detach", is_flag=True, help="Return once started; watch with `fleetctl ops watch ID`."),
    ]
    if config:
        options = [
            click.option("--rolling", is_flag=True, help="Roll the revision out batch by batch as an operation."),
            *options,
            click.option("--canary", type=int, metavar="N", help="Roll out to N nodes first, then pause until "
                                                                 "promoted (fleetctl ops resume ID)."),
            click.option("--auto-revert", is_flag=True, help="Put failed nodes back on the previous revision."),
        ]

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw = {name: kwargs.pop(name) for name in names}
            raw["timeout"] = raw.pop("batch_timeout")
            return fn(*args, rollout=RolloutArgs(**raw), **kwargs)
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper
    return decorate


# -- calls -------------------------------------------------------------------------------------

def call(obj: Ctx, command: str, method: str, request: Message) -> Any:
    """One operations call; a controller that predates operations is named as such."""
    try:
        return obj.controller(command).call(method, request)
    except CommandError as exc:
        if "not implemented" in str(exc).lower():
            raise CommandError(f"{exc} (this controller does not run fleet operations yet: upgrade it)",
                               exc.exit_code) from None
        raise


def _messages(obj: Ctx, op_id: str, note: reconnect.Note) -> Iterator[cpb.Operation]:
    """The operation now and after every change, until it ends, across reconnects (a new
    leader resumes the operation); an unknown id or a refused request ends the watch at once."""
    return reconnect.reconnecting(obj.controller("ops watch"), "WatchOperation", cpb.GetOperationRequest(id=op_id),
                                  what="watch before the operation ended", hint="Ctrl-C detaches", note=note,
                                  done=view.is_ended, fatal=(USAGE, STATUS_UNKNOWN))


# -- the watch ---------------------------------------------------------------------------------

def watch(obj: Ctx, op_id: str, *, show_plan: bool = False) -> int:
    """Follow the operation to its end; the exit status is its outcome (see the module doc).

    Three faces: -o json writes each state as one JSON object per line; a pipe or a log gets
    one plain line per change; a terminal gets a rich Live view with bars and the node table.
    `show_plan` prints the plan from the first message (config push, which has no dry run).
    """
    last: list[cpb.Operation] = []
    try:
        if obj.json:
            for op in _messages(obj, op_id, render.note_line):
                last[:] = [op]
                render.print_json_line(op)
            return view.exit_code(last[-1])
        if not render.out.is_terminal:
            for op in _messages(obj, op_id, render.note_line):
                if show_plan and not last:
                    render.print_view(view.plan_view(op))
                for line in view.change_lines(last[-1] if last else None, op):
                    render.print_view(line)
                last[:] = [op]
                sys.stdout.flush()
        else:
            live_view = view.LiveView(time.time)
            with Live(live_view, console=render.out, auto_refresh=True, refresh_per_second=2) as live:
                def note(text: Text | None) -> None:
                    live_view.note = text
                    live.refresh()

                for op in _messages(obj, op_id, note):
                    if show_plan and not last:
                        live.console.print(view.plan_view(op))
                    last[:] = [op]
                    live_view.update(op)
                    live.refresh()
    except KeyboardInterrupt:
        render.err.print(f"detached; the operation continues: fleetctl ops watch {op_id}", highlight=False)
        return view.exit_code(last[-1], interrupted=True) if last else view.INTERRUPTED
    render.print_view(view.outcome_text(last[-1]))
    return view.exit_code(last[-1])


def _started(op_id: str, detach: bool) -> Group:
    """The line every start prints, with the command that finds the operation again."""
    lines = [Text.assemble("started operation ", (op_id, "bold"))]
    if detach:
        lines.append(Text(f"watch it with: fleetctl ops watch {op_id}"))
    return Group(*lines)


def follow_rollout(obj: Ctx, reply: cpb.PushConfigResponse, detach: bool) -> int:
    """After `config push --rolling` stored a revision: watch its rollout like rolling-restart."""
    if reply.unchanged:  # nothing stored: --rolling is not silently dropped, it has nothing to do
        if not obj.json:
            render.print_view(Text("no rollout started: the text and targets equal the current revision"))
        return 0
    if not reply.operation_id:
        raise CommandError("the controller stored the revision but started no rollout (a controller without "
                           "fleet operations pushes to every node at once): see fleetctl config status")
    if not obj.json:  # the push reply was the JSON answer; the watch's lines follow it
        render.print_view(_started(reply.operation_id, detach))
    if detach:
        return 0
    return watch(obj, reply.operation_id, show_plan=True)


# -- rolling-restart ---------------------------------------------------------------------------

@click.command("rolling-restart", help=f"""Restart process group GROUP node by node, batch by batch.

The controller runs it as a durable operation: a batch is restarted, every process must stay
RUNNING for --healthy-for, then the next batch goes. The plan is shown first; --dry-run stops
there. Then the operation is watched to its end; Ctrl-C detaches and leaves it running. A
paused operation (a failure with --on-failure pause) keeps the watch open until it is
resumed or aborted (fleetctl ops resume|abort ID) or Ctrl-C.

{EXIT_STATUS_HELP}

\b
Examples:
  fleetctl rolling-restart app --label role=web --max-unavailable 25% --dry-run
  fleetctl rolling-restart app --nodes web-1,web-2 --batch 1 --healthy-for 30s -m "new build"
""")
@click.argument("group")
@click.option("--nodes", metavar="A,B", help="Only these nodes (comma-separated).")
@label_option("nodes")
@rollout_options(config=False)
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("-m", "--message", default="", help="Why: recorded with the operation and in the audit log.")
@click.pass_obj
@run_command
def rolling_restart(obj: Ctx, group: str, nodes: str | None, labels: tuple[str, ...], rollout: RolloutArgs,
                    dry_run: bool, message: str) -> int:
    spec = restart_spec(group, nodes, labels, rollout)
    nothing = f"nothing to restart: no selected node has group {spec.group} ({view.selector_text(spec.selector)})"
    return plan_and_run(obj, "rolling-restart", spec, message, rollout, dry_run=dry_run, nothing=nothing)


@click.command("rolling-upgrade", help=f"""Upgrade each node's agent in place, batch by batch, restarting no program.

Install the new fleetvisor on the hosts first (your usual package tooling); this then re-execs
each node's agent into the installed one (as `fleetctl --node H:P agent reexec` does) as a
durable operation. Before a node's re-exec its agent must pass a dry run of the new agent; after
it, the gate is: the agent answers again with the same pid, reports the expected version
(--expect-version, or else the version the installed agent named in its dry run), and every
process it had is there with the same pid and state, for --healthy-for. The first node that
fails pauses the operation (--on-failure). NODE-GLOBS and --label pick the nodes (neither: every
node). The plan is shown first; --dry-run stops there.

{EXIT_STATUS_HELP}

\b
Examples:
  fleetctl rolling-upgrade --dry-run
  fleetctl rolling-upgrade 'web-*' --label dc=eu --batch 2 --expect-version 0.2.0 -m "fleetvisor 0.2.0"
""")
@click.argument("globs", metavar="[NODE-GLOBS]...", nargs=-1)
@label_option("nodes")
@click.option("--expect-version", default="", metavar="V",
              help="The agent version every node must come back with; a node whose installed agent is "
                   "another fails before its re-exec.")
@rollout_options(config=False)
@click.option("--dry-run", is_flag=True, help="Show the plan and stop.")
@click.option("-m", "--message", default="", help="Why: recorded with the operation and in the audit log.")
@click.pass_obj
@run_command
def rolling_upgrade(obj: Ctx, globs: tuple[str, ...], labels: tuple[str, ...], expect_version: str,
                    rollout: RolloutArgs, dry_run: bool, message: str) -> int:
    spec = upgrade_spec(globs, labels, expect_version, rollout)
    nothing = f"nothing to upgrade: no node matches ({view.selector_text(spec.selector, 'every node')})"
    return plan_and_run(obj, "rolling-upgrade", spec, message, rollout, dry_run=dry_run, nothing=nothing)


def plan_and_run(obj: Ctx, command: str, spec: cpb.OperationSpec, message: str, rollout: RolloutArgs, *,
                 dry_run: bool, nothing: str) -> int:
    """The plan (a dry run of the operation) first; then start it and watch it to its end."""
    plan = call(obj, command, "StartOperation", cpb.StartOperationRequest(spec=spec, message=message, dry_run=True))
    if not any(batch.nodes for batch in plan.batches):
        raise CommandError(nothing)
    if dry_run:
        render.show(obj.json, plan, lambda: view.plan_view(plan))
        return 0
    if not obj.json:  # with -o json the started operation (or the watch's lines) is the answer
        render.print_view(view.plan_view(plan))
    op = call(obj, command, "StartOperation", cpb.StartOperationRequest(spec=spec, message=message))
    if rollout.detach:
        render.show(obj.json, op, lambda: _started(op.id, detach=True))
        return 0
    if not obj.json:
        render.print_view(_started(op.id, detach=False))
    return watch(obj, op.id)


# -- ops ---------------------------------------------------------------------------------------

@click.group()
def ops() -> None:
    """Fleet operations (rolling restarts, rolling config rollouts, rolling agent upgrades): list,
    show, watch, pause, resume, abort.

    \b
    Examples:
      fleetctl ops list --all
      fleetctl ops watch op-1f3a
      fleetctl ops resume op-1f3a
    """


@ops.command("list")
@click.option("--all", "everything", is_flag=True, help="Also the ended ones (otherwise running and paused).")
@click.pass_obj
@run_command
def ops_list(obj: Ctx, everything: bool) -> None:
    """Operations with their state and progress, as the controller keeps them.

    \b
    Example:
      fleetctl ops list --all
    """
    reply = call(obj, "ops list", "ListOperations", cpb.ListOperationsRequest(all=everything))

    def listing() -> RenderableType:
        if reply.operations:
            return view.operations_table(reply.operations, time.time())
        return Text("no operations" if everything else "no running or paused operations (--all shows the "
                                                        "ended ones too)")
    render.show(obj.json, reply, listing)


@ops.command("show")
@click.argument("op_id", metavar="ID")
@click.pass_obj
@run_command
def ops_show(obj: Ctx, op_id: str) -> None:
    """One operation: what was asked, its state and reason, and every node's step.

    \b
    Example:
      fleetctl ops show op-1f3a
    """
    op = call(obj, "ops show", "GetOperation", cpb.GetOperationRequest(id=operation_id(op_id)))
    render.show(obj.json, op, lambda: view.detail_view(op, time.time()))


@ops.command("watch", help="""Follow an operation live until it ends (Ctrl-C stops watching, not the operation).

A paused operation keeps the watch open until someone resumes or aborts it.

Exit status: 0 succeeded, 1 failed, aborted or paused, 4 no such operation, 130 Ctrl-C while it
runs (it goes on).

\b
Example:
  fleetctl ops watch op-1f3a
""")
@click.argument("op_id", metavar="ID")
@click.pass_obj
@run_command
def ops_watch(obj: Ctx, op_id: str) -> int:
    return watch(obj, operation_id(op_id))


def _transition(command: str, method: str, summary: str, example: str, *, with_reason: bool) -> click.Command:
    """pause, resume and abort: one call each, answered with the operation as it now stands."""
    def body(obj: Ctx, op_id: str, reason: str = "") -> None:
        op = call(obj, f"ops {command}", method, cpb.GetOperationRequest(id=operation_id(op_id), reason=reason))
        render.show(obj.json, op, lambda: _transition_view(op))

    help_text = f"{summary}\n\n\b\nExample:\n  {example}\n"
    fn = click.pass_obj(run_command(body))
    if with_reason:
        fn = click.option("--reason", default="", help="Why: shown with the operation and in the audit log.")(fn)
    fn = click.argument("op_id", metavar="ID")(fn)
    return ops.command(command, help=help_text)(fn)


ops_pause = _transition("pause", "PauseOperation", "Pause an operation: no new batch starts until it is resumed.",
                        "fleetctl ops pause op-1f3a --reason 'error rate up'", with_reason=True)
ops_resume = _transition("resume", "ResumeOperation", "Resume a paused operation (this also promotes a canary).",
                         "fleetctl ops resume op-1f3a", with_reason=False)
ops_abort = _transition("abort", "AbortOperation",
                        "Abort an operation: nodes not reached are skipped; it cannot be resumed.",
                        "fleetctl ops abort op-1f3a --reason 'bad build'", with_reason=True)

def _transition_view(op: cpb.Operation) -> Group:
    line = Text.assemble("operation ", (op.id, "bold"), " ", view.state_cell(op.state))
    if op.reason:
        line.append(f" — {op.reason}")
    follow = [] if view.is_ended(op) else [Text(f"follow it with: fleetctl ops watch {op.id}")]
    return Group(line, *follow)


TOP_COMMANDS = (rolling_restart, rolling_upgrade, ops)
__all__ = ["TOP_COMMANDS", "follow_rollout", "rollout_options", "watch"]
