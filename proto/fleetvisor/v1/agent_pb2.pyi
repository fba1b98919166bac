from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    STOPPED: _ClassVar[ProcessState]
    STARTING: _ClassVar[ProcessState]
    RUNNING: _ClassVar[ProcessState]
    BACKOFF: _ClassVar[ProcessState]
    STOPPING: _ClassVar[ProcessState]
    EXITED: _ClassVar[ProcessState]
    FATAL: _ClassVar[ProcessState]
    UNKNOWN: _ClassVar[ProcessState]

class SupervisorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPERVISOR_STATE_UNSPECIFIED: _ClassVar[SupervisorState]
    SUPERVISOR_RUNNING: _ClassVar[SupervisorState]
    SUPERVISOR_RESTARTING: _ClassVar[SupervisorState]
    SUPERVISOR_SHUTDOWN: _ClassVar[SupervisorState]
    SUPERVISOR_FATAL: _ClassVar[SupervisorState]

class Health(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_UNSPECIFIED: _ClassVar[Health]
    HEALTH_UNKNOWN: _ClassVar[Health]
    HEALTHY: _ClassVar[Health]
    UNHEALTHY: _ClassVar[Health]

class LogStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_STREAM_UNSPECIFIED: _ClassVar[LogStream]
    STDOUT: _ClassVar[LogStream]
    STDERR: _ClassVar[LogStream]
PROCESS_STATE_UNSPECIFIED: ProcessState
STOPPED: ProcessState
STARTING: ProcessState
RUNNING: ProcessState
BACKOFF: ProcessState
STOPPING: ProcessState
EXITED: ProcessState
FATAL: ProcessState
UNKNOWN: ProcessState
SUPERVISOR_STATE_UNSPECIFIED: SupervisorState
SUPERVISOR_RUNNING: SupervisorState
SUPERVISOR_RESTARTING: SupervisorState
SUPERVISOR_SHUTDOWN: SupervisorState
SUPERVISOR_FATAL: SupervisorState
HEALTH_UNSPECIFIED: Health
HEALTH_UNKNOWN: Health
HEALTHY: Health
UNHEALTHY: Health
LOG_STREAM_UNSPECIFIED: LogStream
STDOUT: LogStream
STDERR: LogStream

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("node", "labels", "agent_version", "supervisor_version", "api_version", "applied_revision", "started_at", "uptime_seconds", "state", "pid", "identifier", "controllers", "fleet_sections", "local_revision", "asyncio_tasks")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    FLEET_SECTIONS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_REVISION_FIELD_NUMBER: _ClassVar[int]
    ASYNCIO_TASKS_FIELD_NUMBER: _ClassVar[int]
    node: str
    labels: _containers.ScalarMap[str, str]
    agent_version: str
    supervisor_version: str
    api_version: str
    applied_revision: str
    started_at: float
    uptime_seconds: float
    state: SupervisorState
    pid: int
    identifier: str
    controllers: _containers.RepeatedScalarFieldContainer[str]
    fleet_sections: _containers.RepeatedScalarFieldContainer[str]
    local_revision: bool
    asyncio_tasks: int
    def __init__(self, node: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., agent_version: _Optional[str] = ..., supervisor_version: _Optional[str] = ..., api_version: _Optional[str] = ..., applied_revision: _Optional[str] = ..., started_at: _Optional[float] = ..., uptime_seconds: _Optional[float] = ..., state: _Optional[_Union[SupervisorState, str]] = ..., pid: _Optional[int] = ..., identifier: _Optional[str] = ..., controllers: _Optional[_Iterable[str]] = ..., fleet_sections: _Optional[_Iterable[str]] = ..., local_revision: _Optional[bool] = ..., asyncio_tasks: _Optional[int] = ...) -> None: ...

class ProcessInfo(_message.Message):
    __slots__ = ("name", "group", "namespec", "state", "statename", "pid", "start", "stop", "now", "exitstatus", "spawnerr", "description", "stdout_logfile", "stderr_logfile", "health", "health_message", "exited_unexpectedly")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    NAMESPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATENAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    EXITSTATUS_FIELD_NUMBER: _ClassVar[int]
    SPAWNERR_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STDOUT_LOGFILE_FIELD_NUMBER: _ClassVar[int]
    STDERR_LOGFILE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXITED_UNEXPECTEDLY_FIELD_NUMBER: _ClassVar[int]
    name: str
    group: str
    namespec: str
    state: ProcessState
    statename: str
    pid: int
    start: float
    stop: float
    now: float
    exitstatus: int
    spawnerr: str
    description: str
    stdout_logfile: str
    stderr_logfile: str
    health: Health
    health_message: str
    exited_unexpectedly: bool
    def __init__(self, name: _Optional[str] = ..., group: _Optional[str] = ..., namespec: _Optional[str] = ..., state: _Optional[_Union[ProcessState, str]] = ..., statename: _Optional[str] = ..., pid: _Optional[int] = ..., start: _Optional[float] = ..., stop: _Optional[float] = ..., now: _Optional[float] = ..., exitstatus: _Optional[int] = ..., spawnerr: _Optional[str] = ..., description: _Optional[str] = ..., stdout_logfile: _Optional[str] = ..., stderr_logfile: _Optional[str] = ..., health: _Optional[_Union[Health, str]] = ..., health_message: _Optional[str] = ..., exited_unexpectedly: _Optional[bool] = ...) -> None: ...

class ListProcessesRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class ListProcessesResponse(_message.Message):
    __slots__ = ("processes", "now")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    now: float
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., now: _Optional[float] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_sequence", "agent_run_id")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AGENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    agent_run_id: str
    def __init__(self, after_sequence: _Optional[int] = ..., agent_run_id: _Optional[str] = ...) -> None: ...

class ProcessStateEvent(_message.Message):
    __slots__ = ("process", "from_state", "expected")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    from_state: ProcessState
    expected: bool
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., from_state: _Optional[_Union[ProcessState, str]] = ..., expected: _Optional[bool] = ...) -> None: ...

class GroupEvent(_message.Message):
    __slots__ = ("group", "added")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    group: str
    added: bool
    def __init__(self, group: _Optional[str] = ..., added: _Optional[bool] = ...) -> None: ...

class SupervisorStateEvent(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: SupervisorState
    def __init__(self, state: _Optional[_Union[SupervisorState, str]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("processes", "info")
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    info: AgentInfo
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., info: _Optional[_Union[AgentInfo, _Mapping]] = ...) -> None: ...

class ConfigAppliedEvent(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: str
    def __init__(self, revision: _Optional[str] = ...) -> None: ...

class AgentEvent(_message.Message):
    __slots__ = ("sequence", "time", "agent_run_id", "snapshot", "process_state", "group", "supervisor_state", "config_applied", "process_health")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    PROCESS_STATE_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_APPLIED_FIELD_NUMBER: _ClassVar[int]
    PROCESS_HEALTH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: float
    agent_run_id: str
    snapshot: Snapshot
    process_state: ProcessStateEvent
    group: GroupEvent
    supervisor_state: SupervisorStateEvent
    config_applied: ConfigAppliedEvent
    process_health: ProcessHealthEvent
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[float] = ..., agent_run_id: _Optional[str] = ..., snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., process_state: _Optional[_Union[ProcessStateEvent, _Mapping]] = ..., group: _Optional[_Union[GroupEvent, _Mapping]] = ..., supervisor_state: _Optional[_Union[SupervisorStateEvent, _Mapping]] = ..., config_applied: _Optional[_Union[ConfigAppliedEvent, _Mapping]] = ..., process_health: _Optional[_Union[ProcessHealthEvent, _Mapping]] = ...) -> None: ...

class ProcessHealthEvent(_message.Message):
    __slots__ = ("process", "from_health")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    FROM_HEALTH_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    from_health: Health
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., from_health: _Optional[_Union[Health, str]] = ...) -> None: ...

class ProcessCommand(_message.Message):
    __slots__ = ("names", "all", "wait", "force", "cluster_id")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    wait: bool
    force: bool
    cluster_id: str
    def __init__(self, names: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., wait: _Optional[bool] = ..., force: _Optional[bool] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class SignalCommand(_message.Message):
    __slots__ = ("names", "all", "signal")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    signal: str
    def __init__(self, names: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., signal: _Optional[str] = ...) -> None: ...

class ProcessResult(_message.Message):
    __slots__ = ("name", "ok", "status", "description", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    status: str
    description: str
    state: ProcessState
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., status: _Optional[str] = ..., description: _Optional[str] = ..., state: _Optional[_Union[ProcessState, str]] = ...) -> None: ...

class CommandResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ProcessResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ProcessResult, _Mapping]]] = ...) -> None: ...

class TailLogRequest(_message.Message):
    __slots__ = ("name", "stream", "offset", "last_bytes", "follow")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAST_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    stream: LogStream
    offset: int
    last_bytes: int
    follow: bool
    def __init__(self, name: _Optional[str] = ..., stream: _Optional[_Union[LogStream, str]] = ..., offset: _Optional[int] = ..., last_bytes: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("data", "offset", "truncated")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    truncated: bool
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ApplyConfigRequest(_message.Message):
    __slots__ = ("revision", "config_text", "dry_run", "cluster_id", "force")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TEXT_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    revision: str
    config_text: str
    dry_run: bool
    cluster_id: str
    force: bool
    def __init__(self, revision: _Optional[str] = ..., config_text: _Optional[str] = ..., dry_run: _Optional[bool] = ..., cluster_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class ApplyConfigResponse(_message.Message):
    __slots__ = ("revision", "added", "changed", "removed", "applied")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    revision: str
    added: _containers.RepeatedScalarFieldContainer[str]
    changed: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    applied: bool
    def __init__(self, revision: _Optional[str] = ..., added: _Optional[_Iterable[str]] = ..., changed: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ..., applied: _Optional[bool] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("revision", "config_text", "edited_by_hand", "config_path")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_TEXT_FIELD_NUMBER: _ClassVar[int]
    EDITED_BY_HAND_FIELD_NUMBER: _ClassVar[int]
    CONFIG_PATH_FIELD_NUMBER: _ClassVar[int]
    revision: str
    config_text: str
    edited_by_hand: bool
    config_path: str
    def __init__(self, revision: _Optional[str] = ..., config_text: _Optional[str] = ..., edited_by_hand: _Optional[bool] = ..., config_path: _Optional[str] = ...) -> None: ...

class ReexecRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class ReexecResponse(_message.Message):
    __slots__ = ("pid", "agent_version")
    PID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    pid: int
    agent_version: str
    def __init__(self, pid: _Optional[int] = ..., agent_version: _Optional[str] = ...) -> None: ...
