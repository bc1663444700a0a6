import datetime

from alpr.v1 import hotlist_pb2 as _hotlist_pb2
from alpr.v1 import reads_pb2 as _reads_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATUS_UNSPECIFIED: _ClassVar[AlertStatus]
    ALERT_STATUS_PENDING: _ClassVar[AlertStatus]
    ALERT_STATUS_ACCEPTED: _ClassVar[AlertStatus]
    ALERT_STATUS_REJECTED: _ClassVar[AlertStatus]

class MatchKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_KIND_UNSPECIFIED: _ClassVar[MatchKind]
    MATCH_KIND_EXACT: _ClassVar[MatchKind]
    MATCH_KIND_LOOKALIKE: _ClassVar[MatchKind]
    MATCH_KIND_MISSING_CHAR: _ClassVar[MatchKind]
    MATCH_KIND_EXTRA_CHAR: _ClassVar[MatchKind]

class EnforcementAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENFORCEMENT_ACTION_UNSPECIFIED: _ClassVar[EnforcementAction]
    ENFORCEMENT_ACTION_TAKING_ACTION: _ClassVar[EnforcementAction]
    ENFORCEMENT_ACTION_ACTION_TAKEN: _ClassVar[EnforcementAction]
    ENFORCEMENT_ACTION_UNABLE_TO_ACT: _ClassVar[EnforcementAction]

class LeadsCheck(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEADS_CHECK_UNSPECIFIED: _ClassVar[LeadsCheck]
    LEADS_CHECK_DONE: _ClassVar[LeadsCheck]
    LEADS_CHECK_NOT_POSSIBLE: _ClassVar[LeadsCheck]

class RejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_REASON_UNSPECIFIED: _ClassVar[RejectReason]
    REJECT_REASON_MISREAD: _ClassVar[RejectReason]
    REJECT_REASON_STATE_MISMATCH: _ClassVar[RejectReason]
    REJECT_REASON_ENTRY_NO_LONGER_VALID: _ClassVar[RejectReason]
    REJECT_REASON_DUPLICATE: _ClassVar[RejectReason]
    REJECT_REASON_OTHER: _ClassVar[RejectReason]

class AlertEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_EVENT_KIND_UNSPECIFIED: _ClassVar[AlertEventKind]
    ALERT_EVENT_KIND_CREATED: _ClassVar[AlertEventKind]
    ALERT_EVENT_KIND_STATUS_CHANGED: _ClassVar[AlertEventKind]
ALERT_STATUS_UNSPECIFIED: AlertStatus
ALERT_STATUS_PENDING: AlertStatus
ALERT_STATUS_ACCEPTED: AlertStatus
ALERT_STATUS_REJECTED: AlertStatus
MATCH_KIND_UNSPECIFIED: MatchKind
MATCH_KIND_EXACT: MatchKind
MATCH_KIND_LOOKALIKE: MatchKind
MATCH_KIND_MISSING_CHAR: MatchKind
MATCH_KIND_EXTRA_CHAR: MatchKind
ENFORCEMENT_ACTION_UNSPECIFIED: EnforcementAction
ENFORCEMENT_ACTION_TAKING_ACTION: EnforcementAction
ENFORCEMENT_ACTION_ACTION_TAKEN: EnforcementAction
ENFORCEMENT_ACTION_UNABLE_TO_ACT: EnforcementAction
LEADS_CHECK_UNSPECIFIED: LeadsCheck
LEADS_CHECK_DONE: LeadsCheck
LEADS_CHECK_NOT_POSSIBLE: LeadsCheck
REJECT_REASON_UNSPECIFIED: RejectReason
REJECT_REASON_MISREAD: RejectReason
REJECT_REASON_STATE_MISMATCH: RejectReason
REJECT_REASON_ENTRY_NO_LONGER_VALID: RejectReason
REJECT_REASON_DUPLICATE: RejectReason
REJECT_REASON_OTHER: RejectReason
ALERT_EVENT_KIND_UNSPECIFIED: AlertEventKind
ALERT_EVENT_KIND_CREATED: AlertEventKind
ALERT_EVENT_KIND_STATUS_CHANGED: AlertEventKind

class AlertMatch(_message.Message):
    __slots__ = ("entry", "kind", "score", "state_mismatch")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STATE_MISMATCH_FIELD_NUMBER: _ClassVar[int]
    entry: _hotlist_pb2.HotListEntry
    kind: MatchKind
    score: float
    state_mismatch: bool
    def __init__(self, entry: _Optional[_Union[_hotlist_pb2.HotListEntry, _Mapping]] = ..., kind: _Optional[_Union[MatchKind, str]] = ..., score: _Optional[float] = ..., state_mismatch: _Optional[bool] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "read_id", "status", "plate", "region", "capture_time", "created_time", "node_id", "camera_id", "node_kind", "location", "matches", "categories", "unattended", "disposition", "hub_id", "read_confidence", "plate_box", "frame_width", "frame_height", "char_confidences", "region_confidence")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    READ_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_KIND_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    UNATTENDED_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    READ_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PLATE_BOX_FIELD_NUMBER: _ClassVar[int]
    FRAME_WIDTH_FIELD_NUMBER: _ClassVar[int]
    FRAME_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHAR_CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    REGION_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    read_id: str
    status: AlertStatus
    plate: str
    region: str
    capture_time: _timestamp_pb2.Timestamp
    created_time: _timestamp_pb2.Timestamp
    node_id: str
    camera_id: str
    node_kind: _reads_pb2.NodeKind
    location: _reads_pb2.GeoPoint
    matches: _containers.RepeatedCompositeFieldContainer[AlertMatch]
    categories: _containers.RepeatedScalarFieldContainer[_hotlist_pb2.HotListCategory]
    unattended: bool
    disposition: Disposition
    hub_id: str
    read_confidence: float
    plate_box: _reads_pb2.BoundingBox
    frame_width: int
    frame_height: int
    char_confidences: _containers.RepeatedScalarFieldContainer[float]
    region_confidence: float
    def __init__(self, alert_id: _Optional[str] = ..., read_id: _Optional[str] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., plate: _Optional[str] = ..., region: _Optional[str] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_id: _Optional[str] = ..., camera_id: _Optional[str] = ..., node_kind: _Optional[_Union[_reads_pb2.NodeKind, str]] = ..., location: _Optional[_Union[_reads_pb2.GeoPoint, _Mapping]] = ..., matches: _Optional[_Iterable[_Union[AlertMatch, _Mapping]]] = ..., categories: _Optional[_Iterable[_Union[_hotlist_pb2.HotListCategory, str]]] = ..., unattended: _Optional[bool] = ..., disposition: _Optional[_Union[Disposition, _Mapping]] = ..., hub_id: _Optional[str] = ..., read_confidence: _Optional[float] = ..., plate_box: _Optional[_Union[_reads_pb2.BoundingBox, _Mapping]] = ..., frame_width: _Optional[int] = ..., frame_height: _Optional[int] = ..., char_confidences: _Optional[_Iterable[float]] = ..., region_confidence: _Optional[float] = ...) -> None: ...

class Acceptance(_message.Message):
    __slots__ = ("characters_verified", "state_verified", "leads_check", "action", "on_other_assignment", "supervisor_notified")
    CHARACTERS_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    STATE_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    LEADS_CHECK_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ON_OTHER_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_NOTIFIED_FIELD_NUMBER: _ClassVar[int]
    characters_verified: bool
    state_verified: bool
    leads_check: LeadsCheck
    action: EnforcementAction
    on_other_assignment: bool
    supervisor_notified: bool
    def __init__(self, characters_verified: _Optional[bool] = ..., state_verified: _Optional[bool] = ..., leads_check: _Optional[_Union[LeadsCheck, str]] = ..., action: _Optional[_Union[EnforcementAction, str]] = ..., on_other_assignment: _Optional[bool] = ..., supervisor_notified: _Optional[bool] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: RejectReason
    def __init__(self, reason: _Optional[_Union[RejectReason, str]] = ...) -> None: ...

class Disposition(_message.Message):
    __slots__ = ("status", "officer_id", "decided_time", "accept", "reject", "note", "amendment", "hub_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OFFICER_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_TIME_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    AMENDMENT_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    status: AlertStatus
    officer_id: str
    decided_time: _timestamp_pb2.Timestamp
    accept: Acceptance
    reject: Rejection
    note: str
    amendment: bool
    hub_id: str
    def __init__(self, status: _Optional[_Union[AlertStatus, str]] = ..., officer_id: _Optional[str] = ..., decided_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., accept: _Optional[_Union[Acceptance, _Mapping]] = ..., reject: _Optional[_Union[Rejection, _Mapping]] = ..., note: _Optional[str] = ..., amendment: _Optional[bool] = ..., hub_id: _Optional[str] = ...) -> None: ...

class GeoBox(_message.Message):
    __slots__ = ("min_latitude", "min_longitude", "max_latitude", "max_longitude")
    MIN_LATITUDE_FIELD_NUMBER: _ClassVar[int]
    MIN_LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    MAX_LATITUDE_FIELD_NUMBER: _ClassVar[int]
    MAX_LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    min_latitude: float
    min_longitude: float
    max_latitude: float
    max_longitude: float
    def __init__(self, min_latitude: _Optional[float] = ..., min_longitude: _Optional[float] = ..., max_latitude: _Optional[float] = ..., max_longitude: _Optional[float] = ...) -> None: ...

class AlertFilter(_message.Message):
    __slots__ = ("categories", "camera_ids", "area")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[_hotlist_pb2.HotListCategory]
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    area: GeoBox
    def __init__(self, categories: _Optional[_Iterable[_Union[_hotlist_pb2.HotListCategory, str]]] = ..., camera_ids: _Optional[_Iterable[str]] = ..., area: _Optional[_Union[GeoBox, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("filter", "after_event_id")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    filter: AlertFilter
    after_event_id: str
    def __init__(self, filter: _Optional[_Union[AlertFilter, _Mapping]] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("event_id", "kind", "alert")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    kind: AlertEventKind
    alert: Alert
    def __init__(self, event_id: _Optional[str] = ..., kind: _Optional[_Union[AlertEventKind, str]] = ..., alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("filter", "status", "unattended_only", "hours", "limit")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    UNATTENDED_ONLY_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    filter: AlertFilter
    status: AlertStatus
    unattended_only: bool
    hours: int
    limit: int
    def __init__(self, filter: _Optional[_Union[AlertFilter, _Mapping]] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., unattended_only: _Optional[bool] = ..., hours: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class GetAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class GetAlertResponse(_message.Message):
    __slots__ = ("alert", "plate_crop_jpeg", "frame_jpeg", "history")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    PLATE_CROP_JPEG_FIELD_NUMBER: _ClassVar[int]
    FRAME_JPEG_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    plate_crop_jpeg: bytes
    frame_jpeg: bytes
    history: _containers.RepeatedCompositeFieldContainer[Disposition]
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ..., plate_crop_jpeg: _Optional[bytes] = ..., frame_jpeg: _Optional[bytes] = ..., history: _Optional[_Iterable[_Union[Disposition, _Mapping]]] = ...) -> None: ...

class DecideAlertRequest(_message.Message):
    __slots__ = ("alert_id", "officer_id", "accept", "reject", "note", "amend")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    OFFICER_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REJECT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    AMEND_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    officer_id: str
    accept: Acceptance
    reject: Rejection
    note: str
    amend: bool
    def __init__(self, alert_id: _Optional[str] = ..., officer_id: _Optional[str] = ..., accept: _Optional[_Union[Acceptance, _Mapping]] = ..., reject: _Optional[_Union[Rejection, _Mapping]] = ..., note: _Optional[str] = ..., amend: _Optional[bool] = ...) -> None: ...

class DecideAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...
