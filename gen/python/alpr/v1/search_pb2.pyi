import datetime

from alpr.v1 import alert_pb2 as _alert_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlateMatchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLATE_MATCH_MODE_UNSPECIFIED: _ClassVar[PlateMatchMode]
    PLATE_MATCH_MODE_EXACT: _ClassVar[PlateMatchMode]
    PLATE_MATCH_MODE_PARTIAL: _ClassVar[PlateMatchMode]
    PLATE_MATCH_MODE_FUZZY: _ClassVar[PlateMatchMode]
PLATE_MATCH_MODE_UNSPECIFIED: PlateMatchMode
PLATE_MATCH_MODE_EXACT: PlateMatchMode
PLATE_MATCH_MODE_PARTIAL: PlateMatchMode
PLATE_MATCH_MODE_FUZZY: PlateMatchMode

class SearchRequest(_message.Message):
    __slots__ = ("purpose", "case_number", "plate", "mode", "start_time", "end_time", "camera_ids", "area", "page_size", "page_token")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    purpose: str
    case_number: str
    plate: str
    mode: PlateMatchMode
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    area: _alert_pb2.GeoBox
    page_size: int
    page_token: str
    def __init__(self, purpose: _Optional[str] = ..., case_number: _Optional[str] = ..., plate: _Optional[str] = ..., mode: _Optional[_Union[PlateMatchMode, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., camera_ids: _Optional[_Iterable[str]] = ..., area: _Optional[_Union[_alert_pb2.GeoBox, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("read_id", "plate", "region", "confidence", "capture_time", "node_id", "camera_id", "latitude", "longitude")
    READ_ID_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    read_id: str
    plate: str
    region: str
    confidence: float
    capture_time: _timestamp_pb2.Timestamp
    node_id: str
    camera_id: str
    latitude: float
    longitude: float
    def __init__(self, read_id: _Optional[str] = ..., plate: _Optional[str] = ..., region: _Optional[str] = ..., confidence: _Optional[float] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., latitude: _Optional[float] = ..., longitude: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "next_page_token", "audit_ref")
    HITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AUDIT_REF_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    next_page_token: str
    audit_ref: str
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., audit_ref: _Optional[str] = ...) -> None: ...
