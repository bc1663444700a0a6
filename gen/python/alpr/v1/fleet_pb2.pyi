import datetime

from alpr.v1 import ingest_pb2 as _ingest_pb2
from alpr.v1 import reads_pb2 as _reads_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FleetServiceListNodesRequest(_message.Message):
    __slots__ = ("problems_only", "node_id", "page_size", "page_token")
    PROBLEMS_ONLY_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    problems_only: bool
    node_id: str
    page_size: int
    page_token: str
    def __init__(self, problems_only: _Optional[bool] = ..., node_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FleetServiceListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    next_page_token: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "node_kind", "last_heartbeat_time", "hub_id", "problems", "cameras", "detector_ok", "hotlist_version", "hotlist_synced_time", "queue_depth", "queue_oldest_age_s", "disk_free_bytes", "clock_skew_s", "software_version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_KIND_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_OK_FIELD_NUMBER: _ClassVar[int]
    HOTLIST_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOTLIST_SYNCED_TIME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CLOCK_SKEW_S_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_kind: _reads_pb2.NodeKind
    last_heartbeat_time: _timestamp_pb2.Timestamp
    hub_id: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    cameras: _containers.RepeatedCompositeFieldContainer[_ingest_pb2.CameraStatus]
    detector_ok: bool
    hotlist_version: int
    hotlist_synced_time: _timestamp_pb2.Timestamp
    queue_depth: int
    queue_oldest_age_s: float
    disk_free_bytes: int
    clock_skew_s: float
    software_version: str
    def __init__(self, node_id: _Optional[str] = ..., node_kind: _Optional[_Union[_reads_pb2.NodeKind, str]] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hub_id: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ..., cameras: _Optional[_Iterable[_Union[_ingest_pb2.CameraStatus, _Mapping]]] = ..., detector_ok: _Optional[bool] = ..., hotlist_version: _Optional[int] = ..., hotlist_synced_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queue_depth: _Optional[int] = ..., queue_oldest_age_s: _Optional[float] = ..., disk_free_bytes: _Optional[int] = ..., clock_skew_s: _Optional[float] = ..., software_version: _Optional[str] = ...) -> None: ...
