"""A fleet operation as the controller keeps it: plain dataclasses, and their record in etcd.

The record under `ops/<id>` is JSON with a `version`. Its field names and enum values are
those of the wire's `Operation` message (snake_case, enum names), so a controller that still
reads records as protobuf JSON reads these too. A reader ignores fields it does not know (a
newer controller may add some) and refuses a version above its own: a change an older reader
would misread bumps VERSION. Records from before the version field are protobuf JSON in
camelCase (version 0); they are read as such.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, get_type_hints

from .errors import CorruptRecord
from .records import Selector, fits, selector_from

VERSION = 1


class Kind(StrEnum):
    UNSPECIFIED = "OPERATION_KIND_UNSPECIFIED"
    ROLLING_RESTART = "ROLLING_RESTART"
    CONFIG_ROLLOUT = "CONFIG_ROLLOUT"
    AGENT_UPGRADE = "AGENT_UPGRADE"


class OpState(StrEnum):
    UNSPECIFIED = "OPERATION_STATE_UNSPECIFIED"
    RUNNING = "OP_RUNNING"
    PAUSED = "OP_PAUSED"
    SUCCEEDED = "OP_SUCCEEDED"
    FAILED = "OP_FAILED"
    ABORTED = "OP_ABORTED"

    @property
    def word(self) -> str:
        """For messages: "running", "paused", ..."""
        return self.value[3:].lower()


class OnFailure(StrEnum):
    UNSPECIFIED = "ON_FAILURE_UNSPECIFIED"
    PAUSE = "PAUSE"
    ABORT = "ABORT"
    CONTINUE = "CONTINUE"


class StepState(StrEnum):
    UNSPECIFIED = "NODE_STEP_STATE_UNSPECIFIED"
    PENDING = "STEP_PENDING"
    ACTING = "STEP_ACTING"
    WAITING = "STEP_WAITING"
    DONE = "STEP_DONE"
    FAILED = "STEP_FAILED"
    REVERTED = "STEP_REVERTED"
    SKIPPED = "STEP_SKIPPED"


ENDED = frozenset({OpState.SUCCEEDED, OpState.FAILED, OpState.ABORTED})
LIVE = frozenset({OpState.RUNNING, OpState.PAUSED})
SETTLED = frozenset({StepState.DONE, StepState.FAILED, StepState.REVERTED, StepState.SKIPPED})
DEFAULT_HEALTHY_FOR = 5.0
DEFAULT_TIMEOUT = 300.0


@dataclass
class Spec:
    kind: Kind = Kind.UNSPECIFIED
    group: str = ""
    selector: Selector = field(default_factory=Selector)
    batch: int = 0
    max_unavailable: str = ""
    healthy_for_seconds: float = 0.0
    timeout_seconds: float = 0.0
    on_failure: OnFailure = OnFailure.UNSPECIFIED
    canary: int = 0
    auto_revert: bool = False
    config_name: str = ""
    config_revision: int = 0
    previous_revision: int = 0
    expect_version: str = ""  # AGENT_UPGRADE: empty, the version each installed agent names in its dry run

    def with_defaults(self) -> Spec:
        return replace(
            self, healthy_for_seconds=self.healthy_for_seconds if self.healthy_for_seconds > 0 else DEFAULT_HEALTHY_FOR,
            timeout_seconds=self.timeout_seconds if self.timeout_seconds > 0 else DEFAULT_TIMEOUT,
            on_failure=OnFailure.PAUSE if self.on_failure == OnFailure.UNSPECIFIED else self.on_failure)


@dataclass
class Held:
    """AGENT_UPGRADE: one process as the agent had it before the re-exec."""

    namespec: str
    pid: int
    state: str  # supervisord's state name


@dataclass
class AgentMark:
    """AGENT_UPGRADE: the agent of a node before its re-exec, and what it must come back as."""

    version_before: str = ""
    version_expected: str = ""
    pid: int = 0
    run_id: str = ""  # the journal's run identity: a re-exec keeps it, a restart does not
    held: list[Held] = field(default_factory=list)
    version_after: str = ""


@dataclass
class Step:
    node: str
    state: StepState = StepState.PENDING
    error: str = ""
    started_at: float = 0.0
    healthy_at: float = 0.0
    done_at: float = 0.0
    pids_before: list[int] = field(default_factory=list)
    retries: int = 0  # times an operator resumed the operation to retry this step
    agent: AgentMark | None = None  # AGENT_UPGRADE, once recorded (before the re-exec is sent)


@dataclass
class Batch:
    nodes: list[Step] = field(default_factory=list)


@dataclass
class Operation:
    id: str
    spec: Spec
    state: OpState = OpState.RUNNING
    batches: list[Batch] = field(default_factory=list)
    current_batch: int = 0
    reason: str = ""
    author: str = ""
    message: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    controller_id: str = ""

    def steps(self) -> list[Step]:
        return [step for batch in self.batches for step in batch.nodes]

    def step(self, node: str) -> Step:
        return next(s for s in self.steps() if s.node == node)


# -- the record ----------------------------------------------------------------------------------

def encode(op: Operation) -> bytes:
    data = asdict(op)
    data["spec"]["selector"] = {"nodes": list(op.spec.selector.nodes), "labels": dict(op.spec.selector.labels)}
    return json.dumps({"version": VERSION, **data}, sort_keys=True).encode()


def decode(raw: bytes, key: str = "") -> Operation:
    """An operation from its record (under `key`, which messages name), in any format this
    controller knows. Raises CorruptRecord (an Unavailable)."""
    where = key or "a stored operation"
    try:
        data = json.loads(raw)
    except ValueError:
        raise CorruptRecord(f"{where}: not JSON") from None
    if not isinstance(data, dict):
        raise CorruptRecord(f"{where}: not a JSON object")
    version = data.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CorruptRecord(f"{where}: operation {str(data.get('id', '?'))[:100]} was stored by a newer controller "
                            f"(record version {str(version)[:20]}; this one reads up to {VERSION}): "
                            "upgrade this controller")
    if version == 0:
        data = _snake(data)
    try:
        return _operation(data)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise CorruptRecord(f"{where}: operation {str(data.get('id', '?'))[:100]} cannot be read: {exc}") from None


def _snake(data: Any) -> Any:
    """Protobuf JSON's camelCase keys as field names (labels are values, not fields)."""
    if isinstance(data, list):
        return [_snake(v) for v in data]
    if not isinstance(data, dict):
        return data
    return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): (v if k == "labels" else _snake(v))
            for k, v in data.items()}


def _known(cls: type, data: object) -> dict[str, Any]:
    """The fields of `cls` in `data`, each of its declared type when that is a plain one (the
    enums, the selector and the nested lists are converted, and so checked, by the callers)."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__.lower()} is not an object")
    hints = get_type_hints(cls)
    known = {k: v for k, v in data.items() if k in hints}
    for name, value in known.items():
        if hints[name] in (str, bool, list[int]) and not fits(value, hints[name]):
            raise TypeError(f"{cls.__name__.lower()} field {name} is of the wrong type")
    return known


def _spec(data: object) -> Spec:
    d = _known(Spec, data)
    selector = d.pop("selector", {}) or {}
    if not isinstance(selector, dict):
        raise TypeError("the selector is not an object")
    return Spec(**{**d, "kind": Kind(d.get("kind", Kind.UNSPECIFIED)),
                   "on_failure": OnFailure(d.get("on_failure", OnFailure.UNSPECIFIED)),
                   "batch": int(d.get("batch", 0)), "canary": int(d.get("canary", 0)),
                   # protobuf JSON writes int64 as strings
                   "config_revision": int(d.get("config_revision", 0)),
                   "previous_revision": int(d.get("previous_revision", 0)),
                   "healthy_for_seconds": float(d.get("healthy_for_seconds", 0)),
                   "timeout_seconds": float(d.get("timeout_seconds", 0)),
                   "selector": selector_from(selector)})


def _step(data: object) -> Step:
    d = _known(Step, data)
    return Step(**{**d, "state": StepState(d.get("state", StepState.UNSPECIFIED)),
                   "started_at": float(d.get("started_at", 0)), "healthy_at": float(d.get("healthy_at", 0)),
                   "done_at": float(d.get("done_at", 0)),
                   "pids_before": [int(p) for p in d.get("pids_before", ())], "retries": int(d.get("retries", 0)),
                   "agent": _agent(d["agent"]) if d.get("agent") is not None else None})


def _agent(data: object) -> AgentMark:
    d = _known(AgentMark, data)
    return AgentMark(**{**d, "pid": int(d.get("pid", 0)), "held": [_held(h) for h in d.get("held", ())]})


def _held(data: object) -> Held:
    d = _known(Held, data)
    return Held(**{**d, "pid": int(d.get("pid", 0))})


def _operation(data: object) -> Operation:
    d = _known(Operation, data)
    return Operation(**{**d, "spec": _spec(d.get("spec", {})), "state": OpState(d.get("state", OpState.UNSPECIFIED)),
                        "current_batch": int(d.get("current_batch", 0)),
                        "created_at": float(d.get("created_at", 0)), "updated_at": float(d.get("updated_at", 0)),
                        "batches": [Batch([_step(s) for s in _known(Batch, b).get("nodes", ())])
                                    for b in d.get("batches", ())]})
