import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HotListCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOT_LIST_CATEGORY_UNSPECIFIED: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_STOLEN_VEHICLE: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_STOLEN_PLATE: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_WANTED_PERSON: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_MISSING_PERSON: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_AMBER_ALERT: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_REGISTRATION_SUSPENDED: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_REGISTRATION_REVOKED: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_REGISTRATION_EXPIRED: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_PARKING_SCOFFLAW: _ClassVar[HotListCategory]
    HOT_LIST_CATEGORY_OTHER: _ClassVar[HotListCategory]

class HotListSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOT_LIST_SOURCE_UNSPECIFIED: _ClassVar[HotListSource]
    HOT_LIST_SOURCE_NCIC: _ClassVar[HotListSource]
    HOT_LIST_SOURCE_LEADS: _ClassVar[HotListSource]
    HOT_LIST_SOURCE_STATE_SOS: _ClassVar[HotListSource]
    HOT_LIST_SOURCE_SCOFFLAW: _ClassVar[HotListSource]
    HOT_LIST_SOURCE_MANUAL: _ClassVar[HotListSource]
    HOT_LIST_SOURCE_OTHER_AGENCY: _ClassVar[HotListSource]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_UPSERT: _ClassVar[ChangeKind]
    CHANGE_KIND_REMOVE: _ClassVar[ChangeKind]

class ImportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMPORT_FORMAT_UNSPECIFIED: _ClassVar[ImportFormat]
    IMPORT_FORMAT_IL_LEADS: _ClassVar[ImportFormat]
    IMPORT_FORMAT_IL_SOS: _ClassVar[ImportFormat]
    IMPORT_FORMAT_CSV: _ClassVar[ImportFormat]
HOT_LIST_CATEGORY_UNSPECIFIED: HotListCategory
HOT_LIST_CATEGORY_STOLEN_VEHICLE: HotListCategory
HOT_LIST_CATEGORY_STOLEN_PLATE: HotListCategory
HOT_LIST_CATEGORY_WANTED_PERSON: HotListCategory
HOT_LIST_CATEGORY_MISSING_PERSON: HotListCategory
HOT_LIST_CATEGORY_AMBER_ALERT: HotListCategory
HOT_LIST_CATEGORY_REGISTRATION_SUSPENDED: HotListCategory
HOT_LIST_CATEGORY_REGISTRATION_REVOKED: HotListCategory
HOT_LIST_CATEGORY_REGISTRATION_EXPIRED: HotListCategory
HOT_LIST_CATEGORY_PARKING_SCOFFLAW: HotListCategory
HOT_LIST_CATEGORY_OTHER: HotListCategory
HOT_LIST_SOURCE_UNSPECIFIED: HotListSource
HOT_LIST_SOURCE_NCIC: HotListSource
HOT_LIST_SOURCE_LEADS: HotListSource
HOT_LIST_SOURCE_STATE_SOS: HotListSource
HOT_LIST_SOURCE_SCOFFLAW: HotListSource
HOT_LIST_SOURCE_MANUAL: HotListSource
HOT_LIST_SOURCE_OTHER_AGENCY: HotListSource
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_UPSERT: ChangeKind
CHANGE_KIND_REMOVE: ChangeKind
IMPORT_FORMAT_UNSPECIFIED: ImportFormat
IMPORT_FORMAT_IL_LEADS: ImportFormat
IMPORT_FORMAT_IL_SOS: ImportFormat
IMPORT_FORMAT_CSV: ImportFormat

class VehicleDescription(_message.Message):
    __slots__ = ("year", "make", "model", "style", "color", "vehicle_type")
    YEAR_FIELD_NUMBER: _ClassVar[int]
    MAKE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    COLOR_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_TYPE_FIELD_NUMBER: _ClassVar[int]
    year: str
    make: str
    model: str
    style: str
    color: str
    vehicle_type: str
    def __init__(self, year: _Optional[str] = ..., make: _Optional[str] = ..., model: _Optional[str] = ..., style: _Optional[str] = ..., color: _Optional[str] = ..., vehicle_type: _Optional[str] = ...) -> None: ...

class HotListEntry(_message.Message):
    __slots__ = ("entry_id", "plate", "state", "category", "source", "priority", "reason", "entered_by", "entered_time", "expire_time", "source_record_id", "vehicle", "details", "version")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ENTERED_BY_FIELD_NUMBER: _ClassVar[int]
    ENTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    plate: str
    state: str
    category: HotListCategory
    source: HotListSource
    priority: int
    reason: str
    entered_by: str
    entered_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    source_record_id: str
    vehicle: VehicleDescription
    details: str
    version: int
    def __init__(self, entry_id: _Optional[str] = ..., plate: _Optional[str] = ..., state: _Optional[str] = ..., category: _Optional[_Union[HotListCategory, str]] = ..., source: _Optional[_Union[HotListSource, str]] = ..., priority: _Optional[int] = ..., reason: _Optional[str] = ..., entered_by: _Optional[str] = ..., entered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_record_id: _Optional[str] = ..., vehicle: _Optional[_Union[VehicleDescription, _Mapping]] = ..., details: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class HotListChange(_message.Message):
    __slots__ = ("kind", "entry_id", "entry")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    kind: ChangeKind
    entry_id: str
    entry: HotListEntry
    def __init__(self, kind: _Optional[_Union[ChangeKind, str]] = ..., entry_id: _Optional[str] = ..., entry: _Optional[_Union[HotListEntry, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("start", "ack")
    START_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    start: SubscribeStart
    ack: SubscribeAck
    def __init__(self, start: _Optional[_Union[SubscribeStart, _Mapping]] = ..., ack: _Optional[_Union[SubscribeAck, _Mapping]] = ...) -> None: ...

class SubscribeStart(_message.Message):
    __slots__ = ("node_id", "have_version")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HAVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    have_version: int
    def __init__(self, node_id: _Optional[str] = ..., have_version: _Optional[int] = ...) -> None: ...

class SubscribeAck(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("snapshot_begin", "snapshot_chunk", "snapshot_end", "delta", "current")
    SNAPSHOT_BEGIN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_END_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    snapshot_begin: SnapshotBegin
    snapshot_chunk: SnapshotChunk
    snapshot_end: SnapshotEnd
    delta: HotListDelta
    current: VersionNotice
    def __init__(self, snapshot_begin: _Optional[_Union[SnapshotBegin, _Mapping]] = ..., snapshot_chunk: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., snapshot_end: _Optional[_Union[SnapshotEnd, _Mapping]] = ..., delta: _Optional[_Union[HotListDelta, _Mapping]] = ..., current: _Optional[_Union[VersionNotice, _Mapping]] = ...) -> None: ...

class SnapshotBegin(_message.Message):
    __slots__ = ("version", "entry_count")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    version: int
    entry_count: int
    def __init__(self, version: _Optional[int] = ..., entry_count: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HotListEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[HotListEntry, _Mapping]]] = ...) -> None: ...

class SnapshotEnd(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class HotListDelta(_message.Message):
    __slots__ = ("version", "changes", "more", "committed_time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_TIME_FIELD_NUMBER: _ClassVar[int]
    version: int
    changes: _containers.RepeatedCompositeFieldContainer[HotListChange]
    more: bool
    committed_time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[HotListChange, _Mapping]]] = ..., more: _Optional[bool] = ..., committed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VersionNotice(_message.Message):
    __slots__ = ("version", "server_time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    version: int
    server_time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., server_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version", "committed_time", "entry_count")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_TIME_FIELD_NUMBER: _ClassVar[int]
    ENTRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    version: int
    committed_time: _timestamp_pb2.Timestamp
    entry_count: int
    def __init__(self, version: _Optional[int] = ..., committed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., entry_count: _Optional[int] = ...) -> None: ...

class AddEntryRequest(_message.Message):
    __slots__ = ("plate", "state", "category", "reason", "entered_by", "expire_time", "priority", "vehicle", "details", "source", "source_record_id")
    PLATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ENTERED_BY_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    plate: str
    state: str
    category: HotListCategory
    reason: str
    entered_by: str
    expire_time: _timestamp_pb2.Timestamp
    priority: int
    vehicle: VehicleDescription
    details: str
    source: HotListSource
    source_record_id: str
    def __init__(self, plate: _Optional[str] = ..., state: _Optional[str] = ..., category: _Optional[_Union[HotListCategory, str]] = ..., reason: _Optional[str] = ..., entered_by: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., vehicle: _Optional[_Union[VehicleDescription, _Mapping]] = ..., details: _Optional[str] = ..., source: _Optional[_Union[HotListSource, str]] = ..., source_record_id: _Optional[str] = ...) -> None: ...

class AddEntryResponse(_message.Message):
    __slots__ = ("entry", "version")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    entry: HotListEntry
    version: int
    def __init__(self, entry: _Optional[_Union[HotListEntry, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class RemoveEntryRequest(_message.Message):
    __slots__ = ("entry_id", "reason", "removed_by")
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMOVED_BY_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    reason: str
    removed_by: str
    def __init__(self, entry_id: _Optional[str] = ..., reason: _Optional[str] = ..., removed_by: _Optional[str] = ...) -> None: ...

class RemoveEntryResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class GetEntryRequest(_message.Message):
    __slots__ = ("entry_id",)
    ENTRY_ID_FIELD_NUMBER: _ClassVar[int]
    entry_id: str
    def __init__(self, entry_id: _Optional[str] = ...) -> None: ...

class GetEntryResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: HotListEntry
    def __init__(self, entry: _Optional[_Union[HotListEntry, _Mapping]] = ...) -> None: ...

class ListEntriesRequest(_message.Message):
    __slots__ = ("plate", "source", "category", "limit")
    PLATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    plate: str
    source: HotListSource
    category: HotListCategory
    limit: int
    def __init__(self, plate: _Optional[str] = ..., source: _Optional[_Union[HotListSource, str]] = ..., category: _Optional[_Union[HotListCategory, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListEntriesResponse(_message.Message):
    __slots__ = ("entries", "version", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[HotListEntry]
    version: int
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[HotListEntry, _Mapping]]] = ..., version: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ImportListRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ImportHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ImportHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportHeader(_message.Message):
    __slots__ = ("format", "source", "skip_bad", "dry_run", "imported_by", "file_name")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SKIP_BAD_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_BY_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    format: ImportFormat
    source: HotListSource
    skip_bad: bool
    dry_run: bool
    imported_by: str
    file_name: str
    def __init__(self, format: _Optional[_Union[ImportFormat, str]] = ..., source: _Optional[_Union[HotListSource, str]] = ..., skip_bad: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., imported_by: _Optional[str] = ..., file_name: _Optional[str] = ...) -> None: ...

class ImportListResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: ImportProgress
    result: ImportResult
    def __init__(self, progress: _Optional[_Union[ImportProgress, _Mapping]] = ..., result: _Optional[_Union[ImportResult, _Mapping]] = ...) -> None: ...

class ImportProgress(_message.Message):
    __slots__ = ("phase", "done", "total")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    phase: str
    done: int
    total: int
    def __init__(self, phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class BadRow(_message.Message):
    __slots__ = ("line", "message")
    LINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    line: int
    message: str
    def __init__(self, line: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ImportResult(_message.Message):
    __slots__ = ("rows", "added", "changed", "removed", "unchanged", "bad_rows", "version", "dry_run")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    BAD_ROWS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    rows: int
    added: int
    changed: int
    removed: int
    unchanged: int
    bad_rows: _containers.RepeatedCompositeFieldContainer[BadRow]
    version: int
    dry_run: bool
    def __init__(self, rows: _Optional[int] = ..., added: _Optional[int] = ..., changed: _Optional[int] = ..., removed: _Optional[int] = ..., unchanged: _Optional[int] = ..., bad_rows: _Optional[_Iterable[_Union[BadRow, _Mapping]]] = ..., version: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...
