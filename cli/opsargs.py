"""The arguments of fleet operations, checked and turned into an `OperationSpec`.

Pure functions, so every refusal (`--batch` with `--max-unavailable`, `--max-unavailable 0`,
`--canary` without `--rolling` ...) is a one-line usage error tested without a controller, and
`rolling-restart` and `config push --rolling` read their shared options the same way. The
controller plans the batches; fleetctl only makes sure what it sends is well-formed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetvisor.v1 import controller_pb2 as cpb

from .client import CommandError
from .duration import DurationError, parse_duration
from .exitcodes import USAGE
from .patterns import parse_labels, parse_node_list

DEFAULT_HEALTHY_FOR = "5s"
DEFAULT_TIMEOUT = "5m"
DEFAULT_MAX_UNAVAILABLE = "1"
ON_FAILURE = {"pause": cpb.PAUSE, "abort": cpb.ABORT, "continue": cpb.CONTINUE}
_COUNT = re.compile(r"\d+")
_PERCENT = re.compile(r"(\d+)\s*%")


@dataclass(frozen=True)
class RolloutArgs:
    """The pacing options as typed (None: not given), before any checking.

    Kept raw so the checks run inside the command, where a refusal is a one-line error, and
    so `config push` can tell "not given" from "given the default" (pacing options without
    `--rolling` are refused rather than silently ignored).
    """

    batch: int | None = None
    max_unavailable: str | None = None
    healthy_for: str | None = None
    timeout: str | None = None
    on_failure: str | None = None
    detach: bool = False
    rolling: bool = False
    canary: int | None = None
    auto_revert: bool = False

    def pacing_given(self) -> list[str]:
        """The options given that only mean something for a rolling operation, as typed."""
        given = {"--batch": self.batch is not None, "--max-unavailable": self.max_unavailable is not None,
                 "--healthy-for": self.healthy_for is not None, "--timeout": self.timeout is not None,
                 "--on-failure": self.on_failure is not None, "--detach": self.detach,
                 "--canary": self.canary is not None, "--auto-revert": self.auto_revert}
        return [option for option, present in given.items() if present]


def parse_max_unavailable(text: str) -> str:
    """`N` (nodes, at least 1) or `P%` (whole percent of the targeted nodes, 1 to 100), in the
    canonical form the controller reads ("25%", "2").

    Zero is refused: an operation that may take no node down can never make progress.
    """
    cleaned = text.strip()
    if _COUNT.fullmatch(cleaned):
        if int(cleaned) < 1:
            raise CommandError(f"--max-unavailable {text!r}: at least 1 node must be allowed down, "
                               "or the operation cannot make progress", USAGE)
        return str(int(cleaned))
    match = _PERCENT.fullmatch(cleaned)
    if match:
        percent = int(match.group(1))
        if not 1 <= percent <= 100:
            raise CommandError(f"--max-unavailable {text!r}: a percentage is from 1% to 100%", USAGE)
        return f"{percent}%"
    raise CommandError(f"--max-unavailable {text!r}: give a node count (2) or a whole percentage of "
                       "the nodes (25%)", USAGE)


def parse_seconds(option: str, text: str, *, allow_zero: bool) -> float:
    """A duration option in seconds; the message names the option, since several take one."""
    try:
        seconds = parse_duration(text)
    except DurationError as exc:
        raise CommandError(f"{option}: {exc}", USAGE) from None
    if seconds <= 0 and not allow_zero:
        raise CommandError(f"{option} {text!r}: must be longer than 0s", USAGE)
    return seconds


def pacing_spec(args: RolloutArgs, kind: cpb.OperationKind) -> cpb.OperationSpec:
    """The fields both kinds share: batch size, pace, and what a failure does.

    Neither `--batch` nor `--max-unavailable`: one node at a time, the safe default.
    """
    if args.batch is not None and args.max_unavailable is not None:
        raise CommandError("give either --batch or --max-unavailable, not both", USAGE)
    if args.batch is not None and args.batch < 1:
        raise CommandError(f"--batch {args.batch}: a batch has at least 1 node", USAGE)
    spec = cpb.OperationSpec(
        kind=kind,
        healthy_for_seconds=parse_seconds("--healthy-for", args.healthy_for or DEFAULT_HEALTHY_FOR, allow_zero=True),
        timeout_seconds=parse_seconds("--timeout", args.timeout or DEFAULT_TIMEOUT, allow_zero=False),
        on_failure=ON_FAILURE[args.on_failure or "pause"])
    if args.batch is not None:
        spec.batch = args.batch
    else:
        spec.max_unavailable = parse_max_unavailable(args.max_unavailable or DEFAULT_MAX_UNAVAILABLE)
    return spec


def restart_spec(group: str, nodes: str | None, labels: tuple[str, ...] | list[str],
                 args: RolloutArgs) -> cpb.OperationSpec:
    """ROLLING_RESTART of GROUP on the selected nodes (none selected: every node with the group)."""
    if not group.strip() or ":" in group:
        raise CommandError(f"{group!r}: give a process group name (e.g. app), not a namespec; choose the "
                           "nodes with --nodes or --label", USAGE)
    node_list = parse_node_list(nodes)
    label_map = parse_labels(labels)
    if node_list and label_map:
        raise CommandError("give either --nodes or --label, not both", USAGE)
    spec = pacing_spec(args, cpb.ROLLING_RESTART)
    spec.group = group.strip()
    spec.selector.CopyFrom(cpb.Assignment(nodes=node_list, labels=label_map))
    return spec


def upgrade_spec(globs: tuple[str, ...] | list[str], labels: tuple[str, ...] | list[str], expect_version: str,
                 args: RolloutArgs) -> cpb.OperationSpec:
    """AGENT_UPGRADE of the nodes the globs and labels pick (neither: every node)."""
    names = [g.strip() for g in globs]
    if any(not g or ":" in g for g in names):
        raise CommandError(f"{next(g for g in globs if not g.strip() or ':' in g)!r}: give node names or globs "
                           "(web-*), not namespecs", USAGE)
    if expect_version != expect_version.strip() or (expect_version and not expect_version.isprintable()):
        raise CommandError(f"--expect-version {expect_version!r}: a version has no spaces", USAGE)
    spec = pacing_spec(args, cpb.AGENT_UPGRADE)
    spec.expect_version = expect_version
    spec.selector.CopyFrom(cpb.Assignment(nodes=names, labels=parse_labels(labels)))
    return spec


def rollout_spec(args: RolloutArgs) -> cpb.OperationSpec | None:
    """The CONFIG_ROLLOUT for `config push --rolling`, or None for a plain push.

    Pacing options without `--rolling` are refused: a push that silently went to every node
    at once, when the operator typed `--canary 1`, is the accident this command exists to avoid.
    """
    if not args.rolling:
        given = args.pacing_given()
        if given:
            raise CommandError(f"{', '.join(given)} only with --rolling (a plain push goes to every node "
                               "at once)", USAGE)
        return None
    spec = pacing_spec(args, cpb.CONFIG_ROLLOUT)
    if args.canary is not None:
        if args.canary < 1:
            raise CommandError(f"--canary {args.canary}: a canary is at least 1 node", USAGE)
        spec.canary = args.canary
    spec.auto_revert = args.auto_revert
    return spec


def operation_id(text: str) -> str:
    """An operation id as typed; blank is a usage error rather than a NOT_FOUND round trip."""
    if not text.strip():
        raise CommandError("operation id required (fleetctl ops list shows them)", USAGE)
    return text.strip()
