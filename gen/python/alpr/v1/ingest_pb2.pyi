import datetime

from alpr.v1 import reads_pb2 as _reads_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestRequest(_message.Message):
    __slots__ = ("read", "heartbeat")
    READ_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    read: _reads_pb2.PlateRead
    heartbeat: Heartbeat
    def __init__(self, read: _Optional[_Union[_reads_pb2.PlateRead, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("ack", "error", "heartbeat_ack")
    ACK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    ack: ReadAck
    error: ReadError
    heartbeat_ack: HeartbeatAck
    def __init__(self, ack: _Optional[_Union[ReadAck, _Mapping]] = ..., error: _Optional[_Union[ReadError, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ...) -> None: ...

class ReadAck(_message.Message):
    __slots__ = ("read_id", "stored_time")
    READ_ID_FIELD_NUMBER: _ClassVar[int]
    STORED_TIME_FIELD_NUMBER: _ClassVar[int]
    read_id: str
    stored_time: _timestamp_pb2.Timestamp
    def __init__(self, read_id: _Optional[str] = ..., stored_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReadError(_message.Message):
    __slots__ = ("read_id", "code", "message", "field", "retryable")
    READ_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    read_id: str
    code: int
    message: str
    field: str
    retryable: bool
    def __init__(self, read_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class CameraStatus(_message.Message):
    __slots__ = ("camera_id", "frames_received", "ok", "problem")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    frames_received: int
    ok: bool
    problem: str
    def __init__(self, camera_id: _Optional[str] = ..., frames_received: _Optional[int] = ..., ok: _Optional[bool] = ..., problem: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("node_id", "node_kind", "sent_time", "cameras", "queue_depth", "queue_oldest_age_s", "hotlist_version", "hotlist_synced_time", "detector_ok", "disk_free_bytes", "problems", "software_version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_KIND_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    QUEUE_OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    HOTLIST_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOTLIST_SYNCED_TIME_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_OK_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_kind: _reads_pb2.NodeKind
    sent_time: _timestamp_pb2.Timestamp
    cameras: _containers.RepeatedCompositeFieldContainer[CameraStatus]
    queue_depth: int
    queue_oldest_age_s: float
    hotlist_version: int
    hotlist_synced_time: _timestamp_pb2.Timestamp
    detector_ok: bool
    disk_free_bytes: int
    problems: _containers.RepeatedScalarFieldContainer[str]
    software_version: str
    def __init__(self, node_id: _Optional[str] = ..., node_kind: _Optional[_Union[_reads_pb2.NodeKind, str]] = ..., sent_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cameras: _Optional[_Iterable[_Union[CameraStatus, _Mapping]]] = ..., queue_depth: _Optional[int] = ..., queue_oldest_age_s: _Optional[float] = ..., hotlist_version: _Optional[int] = ..., hotlist_synced_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., detector_ok: _Optional[bool] = ..., disk_free_bytes: _Optional[int] = ..., problems: _Optional[_Iterable[str]] = ..., software_version: _Optional[str] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("server_time",)
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    server_time: _timestamp_pb2.Timestamp
    def __init__(self, server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
