import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditEntry(_message.Message):
    __slots__ = ("chain", "seq", "time", "actor", "role", "action", "purpose", "case_number", "details_json", "result_count", "outcome", "prev_hash", "entry_hash")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_COUNT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    ENTRY_HASH_FIELD_NUMBER: _ClassVar[int]
    chain: str
    seq: int
    time: _timestamp_pb2.Timestamp
    actor: str
    role: str
    action: str
    purpose: str
    case_number: str
    details_json: str
    result_count: int
    outcome: str
    prev_hash: str
    entry_hash: str
    def __init__(self, chain: _Optional[str] = ..., seq: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., role: _Optional[str] = ..., action: _Optional[str] = ..., purpose: _Optional[str] = ..., case_number: _Optional[str] = ..., details_json: _Optional[str] = ..., result_count: _Optional[int] = ..., outcome: _Optional[str] = ..., prev_hash: _Optional[str] = ..., entry_hash: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("chain", "after_seq", "limit", "action")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    chain: str
    after_seq: int
    limit: int
    action: str
    def __init__(self, chain: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries", "next_after_seq")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    next_after_seq: int
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., next_after_seq: _Optional[int] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditChainReport(_message.Message):
    __slots__ = ("chain", "entries", "ok", "problems")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    chain: str
    entries: int
    ok: bool
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chain: _Optional[str] = ..., entries: _Optional[int] = ..., ok: _Optional[bool] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("ok", "chains")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    chains: _containers.RepeatedCompositeFieldContainer[AuditChainReport]
    def __init__(self, ok: _Optional[bool] = ..., chains: _Optional[_Iterable[_Union[AuditChainReport, _Mapping]]] = ...) -> None: ...
