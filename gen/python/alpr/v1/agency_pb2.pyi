import datetime

from alpr.v1 import alert_pb2 as _alert_pb2
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

class ApproverRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVER_ROLE_UNSPECIFIED: _ClassVar[ApproverRole]
    APPROVER_ROLE_DEPUTY_CHIEF_OF_INVESTIGATIONS: _ClassVar[ApproverRole]
    APPROVER_ROLE_DESIGNEE: _ClassVar[ApproverRole]

class ShareScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHARE_SCOPE_UNSPECIFIED: _ClassVar[ShareScope]
    SHARE_SCOPE_ALERTS: _ClassVar[ShareScope]
    SHARE_SCOPE_READS: _ClassVar[ShareScope]

class RelayReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELAY_REASON_UNSPECIFIED: _ClassVar[RelayReason]
    RELAY_REASON_VALID_ALERT: _ClassVar[RelayReason]
    RELAY_REASON_UNABLE_TO_ACT: _ClassVar[RelayReason]
    RELAY_REASON_UNATTENDED: _ClassVar[RelayReason]
APPROVER_ROLE_UNSPECIFIED: ApproverRole
APPROVER_ROLE_DEPUTY_CHIEF_OF_INVESTIGATIONS: ApproverRole
APPROVER_ROLE_DESIGNEE: ApproverRole
SHARE_SCOPE_UNSPECIFIED: ShareScope
SHARE_SCOPE_ALERTS: ShareScope
SHARE_SCOPE_READS: ShareScope
RELAY_REASON_UNSPECIFIED: RelayReason
RELAY_REASON_VALID_ALERT: RelayReason
RELAY_REASON_UNABLE_TO_ACT: RelayReason
RELAY_REASON_UNATTENDED: RelayReason

class Agency(_message.Message):
    __slots__ = ("agency_id", "name", "state", "endpoint", "tls_identity", "law_enforcement", "ori", "registered_by", "registered_time", "approvals")
    AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TLS_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    LAW_ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    ORI_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BY_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    agency_id: str
    name: str
    state: str
    endpoint: str
    tls_identity: str
    law_enforcement: bool
    ori: str
    registered_by: str
    registered_time: _timestamp_pb2.Timestamp
    approvals: _containers.RepeatedCompositeFieldContainer[AgencyApproval]
    def __init__(self, agency_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., endpoint: _Optional[str] = ..., tls_identity: _Optional[str] = ..., law_enforcement: _Optional[bool] = ..., ori: _Optional[str] = ..., registered_by: _Optional[str] = ..., registered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., approvals: _Optional[_Iterable[_Union[AgencyApproval, _Mapping]]] = ...) -> None: ...

class AgencyApproval(_message.Message):
    __slots__ = ("approval_id", "agency_id", "approver_id", "approver_role", "designated_by", "scopes", "approved_time", "expires_time", "note")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ROLE_FIELD_NUMBER: _ClassVar[int]
    DESIGNATED_BY_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    APPROVED_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    agency_id: str
    approver_id: str
    approver_role: ApproverRole
    designated_by: str
    scopes: _containers.RepeatedScalarFieldContainer[ShareScope]
    approved_time: _timestamp_pb2.Timestamp
    expires_time: _timestamp_pb2.Timestamp
    note: str
    def __init__(self, approval_id: _Optional[str] = ..., agency_id: _Optional[str] = ..., approver_id: _Optional[str] = ..., approver_role: _Optional[_Union[ApproverRole, str]] = ..., designated_by: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[ShareScope, str]]] = ..., approved_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class RegisterAgencyRequest(_message.Message):
    __slots__ = ("agency", "replace")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    agency: Agency
    replace: bool
    def __init__(self, agency: _Optional[_Union[Agency, _Mapping]] = ..., replace: _Optional[bool] = ...) -> None: ...

class RegisterAgencyResponse(_message.Message):
    __slots__ = ("agency",)
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    agency: Agency
    def __init__(self, agency: _Optional[_Union[Agency, _Mapping]] = ...) -> None: ...

class ListAgenciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgenciesResponse(_message.Message):
    __slots__ = ("agencies",)
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    agencies: _containers.RepeatedCompositeFieldContainer[Agency]
    def __init__(self, agencies: _Optional[_Iterable[_Union[Agency, _Mapping]]] = ...) -> None: ...

class ApproveAgencyRequest(_message.Message):
    __slots__ = ("agency_id", "approver_id", "approver_role", "designated_by", "scopes", "expires_time", "note")
    AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ROLE_FIELD_NUMBER: _ClassVar[int]
    DESIGNATED_BY_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    agency_id: str
    approver_id: str
    approver_role: ApproverRole
    designated_by: str
    scopes: _containers.RepeatedScalarFieldContainer[ShareScope]
    expires_time: _timestamp_pb2.Timestamp
    note: str
    def __init__(self, agency_id: _Optional[str] = ..., approver_id: _Optional[str] = ..., approver_role: _Optional[_Union[ApproverRole, str]] = ..., designated_by: _Optional[str] = ..., scopes: _Optional[_Iterable[_Union[ShareScope, str]]] = ..., expires_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class ApproveAgencyResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: AgencyApproval
    def __init__(self, approval: _Optional[_Union[AgencyApproval, _Mapping]] = ...) -> None: ...

class AuthorizeShareRequest(_message.Message):
    __slots__ = ("agency_id", "scope", "subject", "requested_by", "reason")
    AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agency_id: str
    scope: ShareScope
    subject: str
    requested_by: str
    reason: str
    def __init__(self, agency_id: _Optional[str] = ..., scope: _Optional[_Union[ShareScope, str]] = ..., subject: _Optional[str] = ..., requested_by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AuthorizeShareResponse(_message.Message):
    __slots__ = ("agency", "approval_id", "audit_id")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    agency: Agency
    approval_id: str
    audit_id: str
    def __init__(self, agency: _Optional[_Union[Agency, _Mapping]] = ..., approval_id: _Optional[str] = ..., audit_id: _Optional[str] = ...) -> None: ...

class ShareAuditEntry(_message.Message):
    __slots__ = ("audit_id", "time", "agency_id", "scope", "subject", "requested_by", "allowed", "detail", "approval_id")
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    audit_id: str
    time: _timestamp_pb2.Timestamp
    agency_id: str
    scope: ShareScope
    subject: str
    requested_by: str
    allowed: bool
    detail: str
    approval_id: str
    def __init__(self, audit_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agency_id: _Optional[str] = ..., scope: _Optional[_Union[ShareScope, str]] = ..., subject: _Optional[str] = ..., requested_by: _Optional[str] = ..., allowed: _Optional[bool] = ..., detail: _Optional[str] = ..., approval_id: _Optional[str] = ...) -> None: ...

class ListShareAuditRequest(_message.Message):
    __slots__ = ("hours", "agency_id")
    HOURS_FIELD_NUMBER: _ClassVar[int]
    AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    hours: int
    agency_id: str
    def __init__(self, hours: _Optional[int] = ..., agency_id: _Optional[str] = ...) -> None: ...

class ListShareAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ShareAuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[ShareAuditEntry, _Mapping]]] = ...) -> None: ...

class Relay(_message.Message):
    __slots__ = ("idempotency_key", "reason", "origin_agency_id", "origin_hub_id", "alert_id", "plate", "state", "categories", "sources", "location", "capture_time", "camera_id", "node_id", "crop_jpeg", "crop_url", "disposition", "relayed_time", "match")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_HUB_ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    PLATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CROP_JPEG_FIELD_NUMBER: _ClassVar[int]
    CROP_URL_FIELD_NUMBER: _ClassVar[int]
    DISPOSITION_FIELD_NUMBER: _ClassVar[int]
    RELAYED_TIME_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    reason: RelayReason
    origin_agency_id: str
    origin_hub_id: str
    alert_id: str
    plate: str
    state: str
    categories: _containers.RepeatedScalarFieldContainer[_hotlist_pb2.HotListCategory]
    sources: _containers.RepeatedScalarFieldContainer[_hotlist_pb2.HotListSource]
    location: _reads_pb2.GeoPoint
    capture_time: _timestamp_pb2.Timestamp
    camera_id: str
    node_id: str
    crop_jpeg: bytes
    crop_url: str
    disposition: _alert_pb2.Disposition
    relayed_time: _timestamp_pb2.Timestamp
    match: _alert_pb2.AlertMatch
    def __init__(self, idempotency_key: _Optional[str] = ..., reason: _Optional[_Union[RelayReason, str]] = ..., origin_agency_id: _Optional[str] = ..., origin_hub_id: _Optional[str] = ..., alert_id: _Optional[str] = ..., plate: _Optional[str] = ..., state: _Optional[str] = ..., categories: _Optional[_Iterable[_Union[_hotlist_pb2.HotListCategory, str]]] = ..., sources: _Optional[_Iterable[_Union[_hotlist_pb2.HotListSource, str]]] = ..., location: _Optional[_Union[_reads_pb2.GeoPoint, _Mapping]] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., camera_id: _Optional[str] = ..., node_id: _Optional[str] = ..., crop_jpeg: _Optional[bytes] = ..., crop_url: _Optional[str] = ..., disposition: _Optional[_Union[_alert_pb2.Disposition, _Mapping]] = ..., relayed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., match: _Optional[_Union[_alert_pb2.AlertMatch, _Mapping]] = ...) -> None: ...

class ReceiveSharedAlertRequest(_message.Message):
    __slots__ = ("relay",)
    RELAY_FIELD_NUMBER: _ClassVar[int]
    relay: Relay
    def __init__(self, relay: _Optional[_Union[Relay, _Mapping]] = ...) -> None: ...

class ReceiveSharedAlertResponse(_message.Message):
    __slots__ = ("duplicate", "received_time")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    received_time: _timestamp_pb2.Timestamp
    def __init__(self, duplicate: _Optional[bool] = ..., received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SharedAlert(_message.Message):
    __slots__ = ("relay", "received_time", "peer_identity")
    RELAY_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    PEER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    relay: Relay
    received_time: _timestamp_pb2.Timestamp
    peer_identity: str
    def __init__(self, relay: _Optional[_Union[Relay, _Mapping]] = ..., received_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., peer_identity: _Optional[str] = ...) -> None: ...

class ListSharedAlertsRequest(_message.Message):
    __slots__ = ("hours", "origin_agency_id")
    HOURS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_AGENCY_ID_FIELD_NUMBER: _ClassVar[int]
    hours: int
    origin_agency_id: str
    def __init__(self, hours: _Optional[int] = ..., origin_agency_id: _Optional[str] = ...) -> None: ...

class ListSharedAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[SharedAlert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[SharedAlert, _Mapping]]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("bridge_id", "sink", "key", "kind", "failed_time", "attempts", "last_error")
    BRIDGE_ID_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FAILED_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    bridge_id: str
    sink: str
    key: str
    kind: str
    failed_time: _timestamp_pb2.Timestamp
    attempts: int
    last_error: str
    def __init__(self, bridge_id: _Optional[str] = ..., sink: _Optional[str] = ..., key: _Optional[str] = ..., kind: _Optional[str] = ..., failed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("bridge_id", "hours")
    BRIDGE_ID_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    bridge_id: str
    hours: int
    def __init__(self, bridge_id: _Optional[str] = ..., hours: _Optional[int] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class RetryDeadLettersRequest(_message.Message):
    __slots__ = ("bridge_id", "keys", "sink", "hours")
    BRIDGE_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SINK_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    bridge_id: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    sink: str
    hours: int
    def __init__(self, bridge_id: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., sink: _Optional[str] = ..., hours: _Optional[int] = ...) -> None: ...

class RetryDeadLettersResponse(_message.Message):
    __slots__ = ("requeued",)
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    requeued: int
    def __init__(self, requeued: _Optional[int] = ...) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("relay",)
    RELAY_FIELD_NUMBER: _ClassVar[int]
    relay: Relay
    def __init__(self, relay: _Optional[_Union[Relay, _Mapping]] = ...) -> None: ...

class DeliverResponse(_message.Message):
    __slots__ = ("idempotency_key", "duplicate")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    duplicate: bool
    def __init__(self, idempotency_key: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...
