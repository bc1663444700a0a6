"""The hot-list entry (policy §2) shared by hub, node and operator CLI.

Plain dataclass plus conversions to/from the ``alpr.v1`` protobuf message and to/from
JSON-able dicts (the node keeps entries in SQLite). No hub imports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alpr.v1 import hotlist_pb2

from alpr_common.plates import normalize_plate
from alpr_common.timestamps import from_timestamp, to_timestamp, utc

# Names are the proto enum values without their prefix; the CLI accepts them in lower case.
CATEGORIES: tuple[str, ...] = (
    "STOLEN_VEHICLE",
    "STOLEN_PLATE",
    "WANTED_PERSON",
    "MISSING_PERSON",
    "AMBER_ALERT",
    "REGISTRATION_SUSPENDED",
    "REGISTRATION_REVOKED",
    "REGISTRATION_EXPIRED",
    "PARKING_SCOFFLAW",
    "OTHER",
)
SOURCES: tuple[str, ...] = ("NCIC", "LEADS", "STATE_SOS", "SCOFFLAW", "MANUAL", "OTHER_AGENCY")
DEFAULT_PRIORITY = 5


def category_value(name: str) -> int:
    """Proto enum number of a category name (``stolen_vehicle`` or ``STOLEN_VEHICLE``)."""
    return int(hotlist_pb2.HotListCategory.Value("HOT_LIST_CATEGORY_" + name.upper()))


def category_name(value: int) -> str:
    return hotlist_pb2.HotListCategory.Name(hotlist_pb2.HotListCategory.ValueType(value)).removeprefix(
        "HOT_LIST_CATEGORY_"
    )


def source_value(name: str) -> int:
    return int(hotlist_pb2.HotListSource.Value("HOT_LIST_SOURCE_" + name.upper()))


def source_name(value: int) -> str:
    return hotlist_pb2.HotListSource.Name(hotlist_pb2.HotListSource.ValueType(value)).removeprefix("HOT_LIST_SOURCE_")


def make_entry_id(source: str, state: str, plate: str, record: str) -> str:
    """Stable id of an imported entry: the same row in the next extract has the same id."""
    return f"{source}:{state}:{plate}:{record}"


@dataclass(slots=True)
class HotListEntry:
    entry_id: str
    plate: str
    state: str
    category: str  # one of CATEGORIES
    source: str  # one of SOURCES
    priority: int = DEFAULT_PRIORITY
    reason: str = ""
    entered_by: str = ""
    entered_at: datetime | None = None
    expires_at: datetime | None = None
    source_record_id: str = ""
    year: str = ""
    make: str = ""
    model: str = ""
    style: str = ""
    color: str = ""
    vehicle_type: str = ""
    details: str = ""
    version: int = 0

    def content(self) -> tuple[Any, ...]:
        """What an import compares to decide whether an entry changed (not who/when/version)."""
        return (
            self.plate, self.state, self.category, self.source, self.priority, self.reason,
            _ts_key(self.expires_at), self.source_record_id, self.year, self.make, self.model,
            self.style, self.color, self.vehicle_type, self.details,
        )  # fmt: skip

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("entered_at", "expires_at"):
            d[k] = d[k].isoformat() if d[k] else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HotListEntry:
        d = dict(d)
        for k in ("entered_at", "expires_at"):
            d[k] = datetime.fromisoformat(d[k]) if d.get(k) else None
        return cls(**d)


def _ts_key(dt: datetime | None) -> int | None:
    return None if dt is None else int(utc(dt).timestamp())


def entry_to_proto(e: HotListEntry) -> hotlist_pb2.HotListEntry:
    msg = hotlist_pb2.HotListEntry(
        entry_id=e.entry_id,
        plate=e.plate,
        state=e.state,
        category=category_value(e.category),  # type: ignore[arg-type]
        source=source_value(e.source),  # type: ignore[arg-type]
        priority=e.priority,
        reason=e.reason,
        entered_by=e.entered_by,
        source_record_id=e.source_record_id,
        vehicle=hotlist_pb2.VehicleDescription(
            year=e.year, make=e.make, model=e.model, style=e.style, color=e.color, vehicle_type=e.vehicle_type
        ),
        details=e.details,
        version=e.version,
    )
    if e.entered_at:
        msg.entered_time.CopyFrom(to_timestamp(e.entered_at))
    if e.expires_at:
        msg.expire_time.CopyFrom(to_timestamp(e.expires_at))
    return msg


def entry_from_proto(m: hotlist_pb2.HotListEntry) -> HotListEntry:
    v = m.vehicle
    return HotListEntry(
        entry_id=m.entry_id,
        plate=normalize_plate(m.plate),
        state=m.state.upper(),
        category=category_name(m.category),
        source=source_name(m.source),
        priority=m.priority or DEFAULT_PRIORITY,
        reason=m.reason,
        entered_by=m.entered_by,
        entered_at=from_timestamp(m.entered_time) if m.HasField("entered_time") else None,
        expires_at=from_timestamp(m.expire_time) if m.HasField("expire_time") else None,
        source_record_id=m.source_record_id,
        year=v.year,
        make=v.make,
        model=v.model,
        style=v.style,
        color=v.color,
        vehicle_type=v.vehicle_type,
        details=m.details,
        version=m.version,
    )
