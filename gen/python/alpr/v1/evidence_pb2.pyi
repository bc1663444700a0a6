import datetime

from alpr.v1 import reads_pb2 as _reads_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExportEvidenceRequest(_message.Message):
    __slots__ = ("case_number", "purpose", "read_ids")
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    READ_IDS_FIELD_NUMBER: _ClassVar[int]
    case_number: str
    purpose: str
    read_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, case_number: _Optional[str] = ..., purpose: _Optional[str] = ..., read_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EvidenceRead(_message.Message):
    __slots__ = ("case_number", "read", "exported_time", "exported_by", "purpose")
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_BY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    case_number: str
    read: _reads_pb2.PlateRead
    exported_time: _timestamp_pb2.Timestamp
    exported_by: str
    purpose: str
    def __init__(self, case_number: _Optional[str] = ..., read: _Optional[_Union[_reads_pb2.PlateRead, _Mapping]] = ..., exported_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exported_by: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class ExportEvidenceResponse(_message.Message):
    __slots__ = ("reads", "missing_read_ids", "exported_by", "exported_time", "export_id")
    READS_FIELD_NUMBER: _ClassVar[int]
    MISSING_READ_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_BY_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    reads: _containers.RepeatedCompositeFieldContainer[EvidenceRead]
    missing_read_ids: _containers.RepeatedScalarFieldContainer[str]
    exported_by: str
    exported_time: _timestamp_pb2.Timestamp
    export_id: str
    def __init__(self, reads: _Optional[_Iterable[_Union[EvidenceRead, _Mapping]]] = ..., missing_read_ids: _Optional[_Iterable[str]] = ..., exported_by: _Optional[str] = ..., exported_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., export_id: _Optional[str] = ...) -> None: ...

class EvidenceExport(_message.Message):
    __slots__ = ("export_id", "read_ids", "exported_by", "purpose", "exported_time")
    EXPORT_ID_FIELD_NUMBER: _ClassVar[int]
    READ_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_BY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_TIME_FIELD_NUMBER: _ClassVar[int]
    export_id: str
    read_ids: _containers.RepeatedScalarFieldContainer[str]
    exported_by: str
    purpose: str
    exported_time: _timestamp_pb2.Timestamp
    def __init__(self, export_id: _Optional[str] = ..., read_ids: _Optional[_Iterable[str]] = ..., exported_by: _Optional[str] = ..., purpose: _Optional[str] = ..., exported_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetEvidenceRequest(_message.Message):
    __slots__ = ("case_number",)
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    case_number: str
    def __init__(self, case_number: _Optional[str] = ...) -> None: ...

class GetEvidenceResponse(_message.Message):
    __slots__ = ("reads", "exports")
    READS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    reads: _containers.RepeatedCompositeFieldContainer[EvidenceRead]
    exports: _containers.RepeatedCompositeFieldContainer[EvidenceExport]
    def __init__(self, reads: _Optional[_Iterable[_Union[EvidenceRead, _Mapping]]] = ..., exports: _Optional[_Iterable[_Union[EvidenceExport, _Mapping]]] = ...) -> None: ...
