from fleetvisor.v1 import agent_pb2 as _agent_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FollowLiveRequest(_message.Message):
    __slots__ = ("partial",)
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    partial: bool
    def __init__(self, partial: _Optional[bool] = ...) -> None: ...

class LiveNode(_message.Message):
    __slots__ = ("name", "reachable", "error", "state_as_of", "info", "processes", "run_id", "sessions", "partial")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_AS_OF_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    reachable: bool
    error: str
    state_as_of: float
    info: _agent_pb2.AgentInfo
    processes: _containers.RepeatedCompositeFieldContainer[_agent_pb2.ProcessInfo]
    run_id: str
    sessions: int
    partial: bool
    def __init__(self, name: _Optional[str] = ..., reachable: _Optional[bool] = ..., error: _Optional[str] = ..., state_as_of: _Optional[float] = ..., info: _Optional[_Union[_agent_pb2.AgentInfo, _Mapping]] = ..., processes: _Optional[_Iterable[_Union[_agent_pb2.ProcessInfo, _Mapping]]] = ..., run_id: _Optional[str] = ..., sessions: _Optional[int] = ..., partial: _Optional[bool] = ...) -> None: ...

class LiveStates(_message.Message):
    __slots__ = ("controller_id", "resync", "nodes", "dropped")
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    controller_id: str
    resync: bool
    nodes: _containers.RepeatedCompositeFieldContainer[LiveNode]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, controller_id: _Optional[str] = ..., resync: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[LiveNode, _Mapping]]] = ..., dropped: _Optional[_Iterable[str]] = ...) -> None: ...
