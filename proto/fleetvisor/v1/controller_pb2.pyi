from fleetvisor.v1 import agent_pb2 as _agent_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ControlAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTROL_ACTION_UNSPECIFIED: _ClassVar[ControlAction]
    START: _ClassVar[ControlAction]
    STOP: _ClassVar[ControlAction]
    RESTART: _ClassVar[ControlAction]
    SIGNAL: _ClassVar[ControlAction]

class OperationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_KIND_UNSPECIFIED: _ClassVar[OperationKind]
    ROLLING_RESTART: _ClassVar[OperationKind]
    CONFIG_ROLLOUT: _ClassVar[OperationKind]
    AGENT_UPGRADE: _ClassVar[OperationKind]

class OperationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATION_STATE_UNSPECIFIED: _ClassVar[OperationState]
    OP_RUNNING: _ClassVar[OperationState]
    OP_PAUSED: _ClassVar[OperationState]
    OP_SUCCEEDED: _ClassVar[OperationState]
    OP_FAILED: _ClassVar[OperationState]
    OP_ABORTED: _ClassVar[OperationState]

class OnFailure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ON_FAILURE_UNSPECIFIED: _ClassVar[OnFailure]
    PAUSE: _ClassVar[OnFailure]
    ABORT: _ClassVar[OnFailure]
    CONTINUE: _ClassVar[OnFailure]

class NodeStepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STEP_STATE_UNSPECIFIED: _ClassVar[NodeStepState]
    STEP_PENDING: _ClassVar[NodeStepState]
    STEP_ACTING: _ClassVar[NodeStepState]
    STEP_WAITING: _ClassVar[NodeStepState]
    STEP_DONE: _ClassVar[NodeStepState]
    STEP_FAILED: _ClassVar[NodeStepState]
    STEP_REVERTED: _ClassVar[NodeStepState]
    STEP_SKIPPED: _ClassVar[NodeStepState]
CONTROL_ACTION_UNSPECIFIED: ControlAction
START: ControlAction
STOP: ControlAction
RESTART: ControlAction
SIGNAL: ControlAction
OPERATION_KIND_UNSPECIFIED: OperationKind
ROLLING_RESTART: OperationKind
CONFIG_ROLLOUT: OperationKind
AGENT_UPGRADE: OperationKind
OPERATION_STATE_UNSPECIFIED: OperationState
OP_RUNNING: OperationState
OP_PAUSED: OperationState
OP_SUCCEEDED: OperationState
OP_FAILED: OperationState
OP_ABORTED: OperationState
ON_FAILURE_UNSPECIFIED: OnFailure
PAUSE: OnFailure
ABORT: OnFailure
CONTINUE: OnFailure
NODE_STEP_STATE_UNSPECIFIED: NodeStepState
STEP_PENDING: NodeStepState
STEP_ACTING: NodeStepState
STEP_WAITING: NodeStepState
STEP_DONE: NodeStepState
STEP_FAILED: NodeStepState
STEP_REVERTED: NodeStepState
STEP_SKIPPED: NodeStepState

class DashboardTokenRequest(_message.Message):
    __slots__ = ("ttl_seconds",)
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: float
    def __init__(self, ttl_seconds: _Optional[float] = ...) -> None: ...

class DashboardToken(_message.Message):
    __slots__ = ("token", "expires_at", "url")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: float
    url: str
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[float] = ..., url: _Optional[str] = ...) -> None: ...

class RotateDashboardKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateDashboardKeyResponse(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node", "address", "labels", "agent_version", "applied_revision", "agent_run_id", "started_at", "edited_by_hand", "security_revision", "cluster_id", "local_revision", "local_sections")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    AGENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    EDITED_BY_HAND_FIELD_NUMBER: _ClassVar[int]
    SECURITY_REVISION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_REVISION_FIELD_NUMBER: _ClassVar[int]
    LOCAL_SECTIONS_FIELD_NUMBER: _ClassVar[int]
    node: str
    address: str
    labels: _containers.ScalarMap[str, str]
    agent_version: str
    applied_revision: str
    agent_run_id: str
    started_at: float
    edited_by_hand: bool
    security_revision: int
    cluster_id: str
    local_revision: bool
    local_sections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node: _Optional[str] = ..., address: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., agent_version: _Optional[str] = ..., applied_revision: _Optional[str] = ..., agent_run_id: _Optional[str] = ..., started_at: _Optional[float] = ..., edited_by_hand: _Optional[bool] = ..., security_revision: _Optional[int] = ..., cluster_id: _Optional[str] = ..., local_revision: _Optional[bool] = ..., local_sections: _Optional[_Iterable[str]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("interval_seconds", "ttl_seconds", "controller_id", "security")
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    SECURITY_FIELD_NUMBER: _ClassVar[int]
    interval_seconds: float
    ttl_seconds: float
    controller_id: str
    security: SecurityState
    def __init__(self, interval_seconds: _Optional[float] = ..., ttl_seconds: _Optional[float] = ..., controller_id: _Optional[str] = ..., security: _Optional[_Union[SecurityState, _Mapping]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "verbs", "users", "groups", "roles", "labels", "nodes", "programs", "run_as")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERBS_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    RUN_AS_FIELD_NUMBER: _ClassVar[int]
    name: str
    verbs: _containers.RepeatedScalarFieldContainer[str]
    users: _containers.RepeatedScalarFieldContainer[str]
    groups: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    nodes: str
    programs: str
    run_as: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., verbs: _Optional[_Iterable[str]] = ..., users: _Optional[_Iterable[str]] = ..., groups: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., nodes: _Optional[str] = ..., programs: _Optional[str] = ..., run_as: _Optional[_Iterable[str]] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("serial", "name", "who", "time")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    serial: str
    name: str
    who: str
    time: float
    def __init__(self, serial: _Optional[str] = ..., name: _Optional[str] = ..., who: _Optional[str] = ..., time: _Optional[float] = ...) -> None: ...

class SecurityState(_message.Message):
    __slots__ = ("revision", "policies", "revoked")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revision: int
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    revoked: _containers.RepeatedCompositeFieldContainer[Revocation]
    def __init__(self, revision: _Optional[int] = ..., policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., revoked: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("name", "address", "labels", "agent_version", "up", "reachable", "last_heartbeat", "state_as_of", "applied_revision", "desired_revision", "error", "started_at", "edited_by_hand", "foreign", "local_revision", "pinned", "pinned_by", "cluster_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STATE_AS_OF_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REVISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    EDITED_BY_HAND_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_REVISION_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    PINNED_BY_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    labels: _containers.ScalarMap[str, str]
    agent_version: str
    up: bool
    reachable: bool
    last_heartbeat: float
    state_as_of: float
    applied_revision: str
    desired_revision: str
    error: str
    started_at: float
    edited_by_hand: bool
    foreign: str
    local_revision: bool
    pinned: bool
    pinned_by: str
    cluster_id: str
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., agent_version: _Optional[str] = ..., up: _Optional[bool] = ..., reachable: _Optional[bool] = ..., last_heartbeat: _Optional[float] = ..., state_as_of: _Optional[float] = ..., applied_revision: _Optional[str] = ..., desired_revision: _Optional[str] = ..., error: _Optional[str] = ..., started_at: _Optional[float] = ..., edited_by_hand: _Optional[bool] = ..., foreign: _Optional[str] = ..., local_revision: _Optional[bool] = ..., pinned: _Optional[bool] = ..., pinned_by: _Optional[str] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class NodeProcesses(_message.Message):
    __slots__ = ("node", "processes")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    node: NodeInfo
    processes: _containers.RepeatedCompositeFieldContainer[_agent_pb2.ProcessInfo]
    def __init__(self, node: _Optional[_Union[NodeInfo, _Mapping]] = ..., processes: _Optional[_Iterable[_Union[_agent_pb2.ProcessInfo, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("patterns", "labels", "summary", "states", "problems", "summary_above")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_ABOVE_FIELD_NUMBER: _ClassVar[int]
    patterns: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    summary: bool
    states: _containers.RepeatedScalarFieldContainer[str]
    problems: bool
    summary_above: int
    def __init__(self, patterns: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., summary: _Optional[bool] = ..., states: _Optional[_Iterable[str]] = ..., problems: _Optional[bool] = ..., summary_above: _Optional[int] = ...) -> None: ...

class Staleness(_message.Message):
    __slots__ = ("etcd_unavailable", "as_of", "reason")
    ETCD_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    etcd_unavailable: bool
    as_of: float
    reason: str
    def __init__(self, etcd_unavailable: _Optional[bool] = ..., as_of: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class FleetStatus(_message.Message):
    __slots__ = ("nodes", "now", "controller_id", "stale", "summary")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeProcesses]
    now: float
    controller_id: str
    stale: Staleness
    summary: FleetSummary
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeProcesses, _Mapping]]] = ..., now: _Optional[float] = ..., controller_id: _Optional[str] = ..., stale: _Optional[_Union[Staleness, _Mapping]] = ..., summary: _Optional[_Union[FleetSummary, _Mapping]] = ...) -> None: ...

class FleetSummary(_message.Message):
    __slots__ = ("nodes", "nodes_up", "nodes_reachable", "processes", "running", "groups", "problems", "problems_total")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_UP_FIELD_NUMBER: _ClassVar[int]
    NODES_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    nodes: int
    nodes_up: int
    nodes_reachable: int
    processes: int
    running: int
    groups: _containers.RepeatedCompositeFieldContainer[GroupSummary]
    problems: _containers.RepeatedCompositeFieldContainer[Problem]
    problems_total: int
    def __init__(self, nodes: _Optional[int] = ..., nodes_up: _Optional[int] = ..., nodes_reachable: _Optional[int] = ..., processes: _Optional[int] = ..., running: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[GroupSummary, _Mapping]]] = ..., problems: _Optional[_Iterable[_Union[Problem, _Mapping]]] = ..., problems_total: _Optional[int] = ...) -> None: ...

class GroupSummary(_message.Message):
    __slots__ = ("group", "total", "running", "states", "problems")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    group: str
    total: int
    running: int
    states: _containers.RepeatedCompositeFieldContainer[StateCount]
    problems: int
    def __init__(self, group: _Optional[str] = ..., total: _Optional[int] = ..., running: _Optional[int] = ..., states: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., problems: _Optional[int] = ...) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count", "nodes", "nodes_total")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    state: str
    count: int
    nodes: _containers.RepeatedScalarFieldContainer[str]
    nodes_total: int
    def __init__(self, state: _Optional[str] = ..., count: _Optional[int] = ..., nodes: _Optional[_Iterable[str]] = ..., nodes_total: _Optional[int] = ...) -> None: ...

class Problem(_message.Message):
    __slots__ = ("kind", "node", "subject", "state", "detail", "since")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Problem.Kind]
        NODE_DOWN: _ClassVar[Problem.Kind]
        NODE_UNREACHABLE: _ClassVar[Problem.Kind]
        PROCESS: _ClassVar[Problem.Kind]
        DRIFT: _ClassVar[Problem.Kind]
        EDITED_BY_HAND: _ClassVar[Problem.Kind]
        FOREIGN: _ClassVar[Problem.Kind]
        OPERATION: _ClassVar[Problem.Kind]
    KIND_UNSPECIFIED: Problem.Kind
    NODE_DOWN: Problem.Kind
    NODE_UNREACHABLE: Problem.Kind
    PROCESS: Problem.Kind
    DRIFT: Problem.Kind
    EDITED_BY_HAND: Problem.Kind
    FOREIGN: Problem.Kind
    OPERATION: Problem.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    kind: Problem.Kind
    node: str
    subject: str
    state: str
    detail: str
    since: float
    def __init__(self, kind: _Optional[_Union[Problem.Kind, str]] = ..., node: _Optional[str] = ..., subject: _Optional[str] = ..., state: _Optional[str] = ..., detail: _Optional[str] = ..., since: _Optional[float] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("labels",)
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "stale")
    NODES_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    stale: Staleness
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., stale: _Optional[_Union[Staleness, _Mapping]] = ...) -> None: ...

class GetLeaderRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaderInfo(_message.Message):
    __slots__ = ("leader_id", "leader_address", "controller_id", "is_leader", "asyncio_tasks", "followed_nodes", "controllers")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    ASYNCIO_TASKS_FIELD_NUMBER: _ClassVar[int]
    FOLLOWED_NODES_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    leader_address: str
    controller_id: str
    is_leader: bool
    asyncio_tasks: int
    followed_nodes: int
    controllers: _containers.RepeatedCompositeFieldContainer[ControllerShare]
    def __init__(self, leader_id: _Optional[str] = ..., leader_address: _Optional[str] = ..., controller_id: _Optional[str] = ..., is_leader: _Optional[bool] = ..., asyncio_tasks: _Optional[int] = ..., followed_nodes: _Optional[int] = ..., controllers: _Optional[_Iterable[_Union[ControllerShare, _Mapping]]] = ...) -> None: ...

class ControllerShare(_message.Message):
    __slots__ = ("id", "address", "nodes", "connected", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    nodes: int
    connected: bool
    error: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., nodes: _Optional[int] = ..., connected: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("nodes", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ConfigRevision(_message.Message):
    __slots__ = ("name", "revision", "config_text", "author", "message", "created_at", "rollback_of", "assignment", "sha256", "withdrawn")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TEXT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_OF_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    config_text: str
    author: str
    message: str
    created_at: float
    rollback_of: int
    assignment: Assignment
    sha256: str
    withdrawn: str
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., config_text: _Optional[str] = ..., author: _Optional[str] = ..., message: _Optional[str] = ..., created_at: _Optional[float] = ..., rollback_of: _Optional[int] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., sha256: _Optional[str] = ..., withdrawn: _Optional[str] = ...) -> None: ...

class PushConfigRequest(_message.Message):
    __slots__ = ("name", "config_text", "assignment", "message", "rollout", "dry_run")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TEXT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    config_text: str
    assignment: Assignment
    message: str
    rollout: OperationSpec
    dry_run: bool
    def __init__(self, name: _Optional[str] = ..., config_text: _Optional[str] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., message: _Optional[str] = ..., rollout: _Optional[_Union[OperationSpec, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class PushConfigResponse(_message.Message):
    __slots__ = ("revision", "target_nodes", "unchanged", "operation_id", "plan")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODES_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    revision: ConfigRevision
    target_nodes: _containers.RepeatedScalarFieldContainer[str]
    unchanged: bool
    operation_id: str
    plan: Operation
    def __init__(self, revision: _Optional[_Union[ConfigRevision, _Mapping]] = ..., target_nodes: _Optional[_Iterable[str]] = ..., unchanged: _Optional[bool] = ..., operation_id: _Optional[str] = ..., plan: _Optional[_Union[Operation, _Mapping]] = ...) -> None: ...

class RollbackConfigRequest(_message.Message):
    __slots__ = ("name", "to_revision", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    to_revision: int
    message: str
    def __init__(self, name: _Optional[str] = ..., to_revision: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class DeleteConfigRequest(_message.Message):
    __slots__ = ("name", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    message: str
    def __init__(self, name: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DeleteConfigResponse(_message.Message):
    __slots__ = ("name", "last_revision", "target_nodes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAST_REVISION_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODES_FIELD_NUMBER: _ClassVar[int]
    name: str
    last_revision: int
    target_nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., last_revision: _Optional[int] = ..., target_nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListConfigsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConfigSummary(_message.Message):
    __slots__ = ("name", "current_revision", "assignment", "target_nodes", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    TARGET_NODES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    current_revision: int
    assignment: Assignment
    target_nodes: _containers.RepeatedScalarFieldContainer[str]
    updated_at: float
    def __init__(self, name: _Optional[str] = ..., current_revision: _Optional[int] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., target_nodes: _Optional[_Iterable[str]] = ..., updated_at: _Optional[float] = ...) -> None: ...

class ListConfigsResponse(_message.Message):
    __slots__ = ("configs",)
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    configs: _containers.RepeatedCompositeFieldContainer[ConfigSummary]
    def __init__(self, configs: _Optional[_Iterable[_Union[ConfigSummary, _Mapping]]] = ...) -> None: ...

class ConfigHistoryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ConfigHistoryResponse(_message.Message):
    __slots__ = ("revisions", "current_revision")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[ConfigRevision]
    current_revision: int
    def __init__(self, revisions: _Optional[_Iterable[_Union[ConfigRevision, _Mapping]]] = ..., current_revision: _Optional[int] = ...) -> None: ...

class GetConfigRevisionRequest(_message.Message):
    __slots__ = ("name", "revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ConfigStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeConfigStatus(_message.Message):
    __slots__ = ("node", "desired_revision", "applied_revision", "in_sync", "last_error", "last_attempt", "attempts", "edited_by_hand", "up", "refused", "held")
    class RefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REVISION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    IN_SYNC_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    EDITED_BY_HAND_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    node: str
    desired_revision: str
    applied_revision: str
    in_sync: bool
    last_error: str
    last_attempt: float
    attempts: int
    edited_by_hand: bool
    up: bool
    refused: _containers.ScalarMap[str, str]
    held: str
    def __init__(self, node: _Optional[str] = ..., desired_revision: _Optional[str] = ..., applied_revision: _Optional[str] = ..., in_sync: _Optional[bool] = ..., last_error: _Optional[str] = ..., last_attempt: _Optional[float] = ..., attempts: _Optional[int] = ..., edited_by_hand: _Optional[bool] = ..., up: _Optional[bool] = ..., refused: _Optional[_Mapping[str, str]] = ..., held: _Optional[str] = ...) -> None: ...

class ConfigStatusResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeConfigStatus]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeConfigStatus, _Mapping]]] = ...) -> None: ...

class ControlRequest(_message.Message):
    __slots__ = ("action", "patterns", "labels", "signal", "wait", "node_timeout_seconds")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    action: ControlAction
    patterns: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    signal: str
    wait: bool
    node_timeout_seconds: float
    def __init__(self, action: _Optional[_Union[ControlAction, str]] = ..., patterns: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., signal: _Optional[str] = ..., wait: _Optional[bool] = ..., node_timeout_seconds: _Optional[float] = ...) -> None: ...

class NodeResult(_message.Message):
    __slots__ = ("node", "ok", "error", "results", "seconds")
    NODE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    node: str
    ok: bool
    error: str
    results: _containers.RepeatedCompositeFieldContainer[_agent_pb2.ProcessResult]
    seconds: float
    def __init__(self, node: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., results: _Optional[_Iterable[_Union[_agent_pb2.ProcessResult, _Mapping]]] = ..., seconds: _Optional[float] = ...) -> None: ...

class ControlResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeResult]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeResult, _Mapping]]] = ...) -> None: ...

class FleetTailRequest(_message.Message):
    __slots__ = ("node", "request")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    node: str
    request: _agent_pb2.TailLogRequest
    def __init__(self, node: _Optional[str] = ..., request: _Optional[_Union[_agent_pb2.TailLogRequest, _Mapping]] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since", "limit")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since: float
    limit: int
    def __init__(self, since: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("time", "who", "action", "detail", "ok", "result", "controller_id")
    TIME_FIELD_NUMBER: _ClassVar[int]
    WHO_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    time: float
    who: str
    action: str
    detail: str
    ok: bool
    result: str
    controller_id: str
    def __init__(self, time: _Optional[float] = ..., who: _Optional[str] = ..., action: _Optional[str] = ..., detail: _Optional[str] = ..., ok: _Optional[bool] = ..., result: _Optional[str] = ..., controller_id: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class OperationSpec(_message.Message):
    __slots__ = ("kind", "group", "selector", "batch", "max_unavailable", "healthy_for_seconds", "timeout_seconds", "on_failure", "canary", "auto_revert", "config_name", "config_revision", "previous_revision", "expect_version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FOR_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    AUTO_REVERT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_REVISION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REVISION_FIELD_NUMBER: _ClassVar[int]
    EXPECT_VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: OperationKind
    group: str
    selector: Assignment
    batch: int
    max_unavailable: str
    healthy_for_seconds: float
    timeout_seconds: float
    on_failure: OnFailure
    canary: int
    auto_revert: bool
    config_name: str
    config_revision: int
    previous_revision: int
    expect_version: str
    def __init__(self, kind: _Optional[_Union[OperationKind, str]] = ..., group: _Optional[str] = ..., selector: _Optional[_Union[Assignment, _Mapping]] = ..., batch: _Optional[int] = ..., max_unavailable: _Optional[str] = ..., healthy_for_seconds: _Optional[float] = ..., timeout_seconds: _Optional[float] = ..., on_failure: _Optional[_Union[OnFailure, str]] = ..., canary: _Optional[int] = ..., auto_revert: _Optional[bool] = ..., config_name: _Optional[str] = ..., config_revision: _Optional[int] = ..., previous_revision: _Optional[int] = ..., expect_version: _Optional[str] = ...) -> None: ...

class NodeStep(_message.Message):
    __slots__ = ("node", "state", "error", "started_at", "healthy_at", "done_at", "pids_before", "agent_version_before", "agent_version_expected", "agent_version_after")
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_AT_FIELD_NUMBER: _ClassVar[int]
    DONE_AT_FIELD_NUMBER: _ClassVar[int]
    PIDS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_BEFORE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_EXPECTED_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_AFTER_FIELD_NUMBER: _ClassVar[int]
    node: str
    state: NodeStepState
    error: str
    started_at: float
    healthy_at: float
    done_at: float
    pids_before: _containers.RepeatedScalarFieldContainer[int]
    agent_version_before: str
    agent_version_expected: str
    agent_version_after: str
    def __init__(self, node: _Optional[str] = ..., state: _Optional[_Union[NodeStepState, str]] = ..., error: _Optional[str] = ..., started_at: _Optional[float] = ..., healthy_at: _Optional[float] = ..., done_at: _Optional[float] = ..., pids_before: _Optional[_Iterable[int]] = ..., agent_version_before: _Optional[str] = ..., agent_version_expected: _Optional[str] = ..., agent_version_after: _Optional[str] = ...) -> None: ...

class OperationBatch(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStep]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStep, _Mapping]]] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("id", "spec", "state", "batches", "current_batch", "reason", "author", "message", "created_at", "updated_at", "controller_id", "gates")
    class GatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    CURRENT_BATCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: OperationSpec
    state: OperationState
    batches: _containers.RepeatedCompositeFieldContainer[OperationBatch]
    current_batch: int
    reason: str
    author: str
    message: str
    created_at: float
    updated_at: float
    controller_id: str
    gates: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[OperationSpec, _Mapping]] = ..., state: _Optional[_Union[OperationState, str]] = ..., batches: _Optional[_Iterable[_Union[OperationBatch, _Mapping]]] = ..., current_batch: _Optional[int] = ..., reason: _Optional[str] = ..., author: _Optional[str] = ..., message: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., controller_id: _Optional[str] = ..., gates: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StartOperationRequest(_message.Message):
    __slots__ = ("spec", "message", "dry_run")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    spec: OperationSpec
    message: str
    dry_run: bool
    def __init__(self, spec: _Optional[_Union[OperationSpec, _Mapping]] = ..., message: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ListOperationsRequest(_message.Message):
    __slots__ = ("all",)
    ALL_FIELD_NUMBER: _ClassVar[int]
    all: bool
    def __init__(self, all: _Optional[bool] = ...) -> None: ...

class ListOperationsResponse(_message.Message):
    __slots__ = ("operations",)
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    def __init__(self, policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ...) -> None: ...

class SetPolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeletePolicyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ForgetNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class ForgetNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RevokeCertificateRequest(_message.Message):
    __slots__ = ("serial", "name")
    SERIAL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    serial: str
    name: str
    def __init__(self, serial: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListRevocationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AdoptNodeRequest(_message.Message):
    __slots__ = ("node", "keep")
    NODE_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    node: str
    keep: bool
    def __init__(self, node: _Optional[str] = ..., keep: _Optional[bool] = ...) -> None: ...

class PinNodeRequest(_message.Message):
    __slots__ = ("node", "reason")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node: str
    reason: str
    def __init__(self, node: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListRevocationsResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: _containers.RepeatedCompositeFieldContainer[Revocation]
    def __init__(self, revoked: _Optional[_Iterable[_Union[Revocation, _Mapping]]] = ...) -> None: ...
