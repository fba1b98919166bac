"""fleetctl's config revision commands in fleet mode: push, rollback, delete, history, diff,
show, status, list.

Kept apart from fleet.py because they share one concern (named configs and their numbered
revisions in the controller) and none of the process-control plumbing.
"""

from __future__ import annotations

import sys
import time

import click
from rich.console import Group
from rich.text import Text

from fleetvisor.agent.limits import MAX_CONFIG_BYTES
from fleetvisor.v1 import controller_pb2 as cpb

from . import fleetrender as view
from . import render
from .client import CommandError
from .context import Ctx, run_command
from .exitcodes import USAGE
from .fleet import label_option
from .ops import follow_rollout, rollout_options
from .opsargs import RolloutArgs, rollout_spec
from .opsrender import plan_view
from .patterns import parse_labels, parse_node_list


def run_config_show(obj: Ctx, name: str | None, rev: int | None) -> None:
    """The revision's text exactly on stdout; what it is on stderr."""
    if not name:
        raise CommandError("config name required: fleetctl config show NAME [--rev N] "
                           "(fleetctl config list shows the names)", USAGE)
    reply = obj.controller().call("GetConfigRevision", cpb.GetConfigRevisionRequest(name=name, revision=rev or 0))

    def exact_text() -> None:
        render.err.print(view.revision_line(reply))
        sys.stdout.write(reply.config_text)
        sys.stdout.flush()
    render.show(obj.json, reply, exact_text)


def read_config_file(path: str) -> str:
    """The file to push, as text; `-` is stdin. Unreadable, non-UTF-8 or over the controller's
    size limit (read no further: /dev/zero never ends) is one clear line."""
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(MAX_CONFIG_BYTES + 1)
        else:
            with open(path, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise CommandError(f"{path}: a config is limited to {MAX_CONFIG_BYTES} bytes", USAGE)
        return raw.decode("utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", USAGE) from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"cannot read {path}: not UTF-8 text (byte {exc.start})", USAGE) from None


@click.command("push")
@click.argument("file", metavar="FILE")
@click.option("--name", required=True, help="The config's name (one name per set of programs).")
@click.option("--nodes", metavar="A,B", help="Send it to these nodes (comma-separated).")
@label_option("send it to the nodes")
@click.option("-m", "--message", required=True, callback=lambda ctx, param, value: required_text(param, value),
              help="Why: recorded with the revision and in the audit log.")
@rollout_options(config=True)
@click.option("--dry-run", is_flag=True, help="Check the push and show what it would store and, with --rolling, "
              "the plan and its gates; store nothing.")
@click.pass_obj
@run_command
def config_push(obj: Ctx, file: str, name: str, nodes: str | None, labels: tuple[str, ...], message: str,
                rollout: RolloutArgs, dry_run: bool) -> int:
    """Store FILE (program sections) as a new revision of config NAME and roll it out.

    Without --nodes or --label the current assignment is kept (a new NAME needs one).
    FILE may be - for stdin. With --rolling the revision goes out batch by batch as an
    operation that is watched like rolling-restart (exit 0 succeeded, 1 failed, aborted or
    paused, 130 Ctrl-C while it runs); a --canary pauses until `fleetctl ops resume ID`.

    \b
    Examples:
      fleetctl config push web.conf --name web --label role=web -m "raise numprocs to 4"
      fleetctl config push web.conf --name web -m "4 workers" --rolling --canary 1 --max-unavailable 25%
      fleetctl config push web.conf --name web -m "4 workers" --rolling --batch 2 --dry-run
    """
    controller = obj.controller("config push")
    node_list = parse_node_list(nodes)
    label_map = parse_labels(labels)
    if node_list and label_map:
        raise CommandError("give either --nodes or --label, not both", USAGE)
    spec = rollout_spec(rollout)
    text = read_config_file(file)
    request = cpb.PushConfigRequest(name=name, config_text=text, message=message,
                                    assignment=cpb.Assignment(nodes=node_list, labels=label_map), rollout=spec,
                                    dry_run=dry_run)
    try:
        reply = controller.call("PushConfig", request)
    except CommandError as exc:
        raise CommandError(name_pushed_file(str(exc), name, file), exc.exit_code) from None
    if dry_run:
        render.show(obj.json, reply, lambda: Group(view.push_line(reply, dry_run=True),
                                                   *([plan_view(reply.plan)] if reply.HasField("plan") else [])))
        return 0
    render.show(obj.json, reply, lambda: view.push_line(reply))
    return follow_rollout(obj, reply, rollout.detach) if spec is not None else 0


def required_text(param: click.Parameter, value: str) -> str:
    """A required option given as '' (or only blanks) is as good as missing."""
    if not value.strip():
        raise click.BadParameter("must not be empty", param=param)
    return value


def name_pushed_file(message: str, name: str, path: str) -> str:
    """The controller parses the text as `NAME.conf` (it never sees the operator's file), so a
    refusal says "file: 'web.conf', line: 3"; the operator pushed e.g. ./web-v2.conf and should
    be pointed at that. Other files named in the message (a clash with another config) stay."""
    shown = "<stdin>" if path == "-" else path
    return message.replace(f"(file: {name + '.conf'!r}", f"(file: {shown!r}")


@click.command("rollback")
@click.argument("name")
@click.option("--to", "to_revision", type=int, required=True, metavar="N", help="The revision to go back to.")
@click.option("-m", "--message", default="", help="Why (recorded with the new revision).")
@click.pass_obj
@run_command
def config_rollback(obj: Ctx, name: str, to_revision: int, message: str) -> None:
    """Store a copy of revision N of config NAME as its newest revision.

    \b
    Example:
      fleetctl config rollback web --to 3 -m "4 workers overload the db"
    """
    reply = obj.controller("config rollback").call(
        "RollbackConfig", cpb.RollbackConfigRequest(name=name, to_revision=to_revision, message=message))
    render.show(obj.json, reply, lambda: view.push_line(reply))


@click.command("delete")
@click.argument("name")
@click.option("-m", "--message", required=True, callback=lambda ctx, param, value: required_text(param, value),
              help="Why: recorded in the audit log.")
@click.option("--yes", is_flag=True, help="Do not ask first.")
@click.pass_obj
@run_command
def config_delete(obj: Ctx, name: str, message: str, yes: bool) -> None:
    """Take config NAME off every node it goes to.

    The nodes stop and remove its programs. Its history stays (config history NAME), and a
    later push of NAME starts it again. Without --yes this asks first, and refuses when there
    is no terminal to ask on.

    \b
    Example:
      fleetctl config delete old-web -m "replaced by web" --yes
    """
    controller = obj.controller("config delete")
    if not yes:
        listed = controller.call("ListConfigs", cpb.ListConfigsRequest()).configs
        targets = next((", ".join(c.target_nodes) for c in listed if c.name == name), "") or "no node"
        question = f"delete config {name} and remove its programs from {targets}?"
        if not sys.stdin.isatty():
            raise CommandError(f"{question} Repeat with --yes to confirm (there is no terminal to ask on)", USAGE)
        if not click.confirm(question):
            raise CommandError("nothing deleted", 1)
    reply = controller.call("DeleteConfig", cpb.DeleteConfigRequest(name=name, message=message))
    render.show(obj.json, reply, lambda: view.deleted_line(reply))


@click.command("history")
@click.argument("name")
@click.pass_obj
@run_command
def config_history(obj: Ctx, name: str) -> None:
    """Every revision of config NAME, oldest first, with the current one marked.

    \b
    Example:
      fleetctl config history web
    """
    reply = obj.controller("config history").call("ConfigHistory", cpb.ConfigHistoryRequest(name=name))
    render.show(obj.json, reply, lambda: view.history_table(reply))


@click.command("diff")
@click.argument("name")
@click.argument("old", type=int, metavar="A")
@click.argument("new", type=int, metavar="B")
@click.pass_obj
@run_command
def config_diff(obj: Ctx, name: str, old: int, new: int) -> None:
    """A unified diff from revision A to revision B of config NAME.

    \b
    Example:
      fleetctl config diff web 3 4
    """
    controller = obj.controller("config diff")
    texts = [controller.call("GetConfigRevision", cpb.GetConfigRevisionRequest(name=name, revision=rev)).config_text
             for rev in (old, new)]
    lines = view.diff_lines(texts[0], texts[1], f"{name}@{old}", f"{name}@{new}")
    patch = "".join(line + "\n" for line in lines)

    def diff() -> Text | None:
        if not lines:
            render.err.print(f"{render.escape(name)}: revisions {old} and {new} have the same text")
            return None
        if render.out.is_terminal:
            return view.diff_text(lines)
        sys.stdout.write(patch)  # exact, tabs and trailing blanks kept: patch(1) can apply it
        return None
    render.show(obj.json, {"name": name, "from": old, "to": new, "diff": patch}, diff)


@click.command("status")
@click.pass_obj
@run_command
def config_status(obj: Ctx) -> None:
    """Per node: the desired and applied revisions, whether they agree, and the last error.

    \b
    Example:
      fleetctl config status
    """
    reply = obj.controller("config status").call("ConfigStatus", cpb.ConfigStatusRequest())
    render.show(obj.json, reply, lambda: view.config_status_table(reply.nodes))


@click.command("list")
@click.pass_obj
@run_command
def config_list(obj: Ctx) -> None:
    """Every config name with its current revision and where it goes.

    \b
    Example:
      fleetctl config list
    """
    reply = obj.controller("config list").call("ListConfigs", cpb.ListConfigsRequest())
    render.show(obj.json, reply, lambda: view.configs_table(reply.configs, time.time()))


CONFIG_COMMANDS = (config_push, config_rollback, config_delete, config_history, config_diff, config_status, config_list)
