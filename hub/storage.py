"""Plate reads and node status in Cassandra: the three read tables (by id, by plate and
UTC day, by camera and UTC hour), each node's latest heartbeat, and the oldest stored read."""

from __future__ import annotations

import asyncio
import calendar
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from alpr.v1 import ingest_pb2, reads_pb2
from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import BoundStatement

from alpr_common.cassandra import CassandraStore, Row, Values, insert_cql
from alpr_common.timestamps import from_timestamp, utc
from hub.config import HubConfig

NODE_KINDS = {reads_pb2.NODE_KIND_FIXED: "FIXED", reads_pb2.NODE_KIND_MOBILE: "MOBILE"}

READS_BY_ID = (
    "read_id", "node_id", "camera_id", "node_kind", "capture_time", "received_time", "hub_id", "plate",
    "confidence", "char_confidences", "region", "region_confidence", "box_x1", "box_y1", "box_x2", "box_y2",
    "frame_width", "frame_height", "plate_crop_jpeg", "frame_jpeg", "latitude", "longitude", "gps_accuracy_m",
    "heading_deg", "speed_mps", "detector_version", "ocr_version", "state_model_version", "location_quality",
    "location_age_s", "model_release",
)  # fmt: skip
READS_BY_PLATE = (
    "plate", "day", "capture_time", "read_id", "region", "confidence", "node_id", "camera_id", "node_kind",
    "latitude", "longitude", "location_quality", "location_age_s",
)  # fmt: skip
READS_BY_CAMERA = (
    "camera_id", "hour", "capture_time", "read_id", "plate", "region", "confidence", "node_id", "latitude",
    "longitude", "location_quality", "location_age_s",
)  # fmt: skip
NODE_STATUS = (
    "node_id", "node_kind", "last_heartbeat", "hub_id", "queue_depth", "queue_oldest_age_s", "hotlist_version",
    "hotlist_synced_time", "detector_ok", "disk_free_bytes", "problems", "cameras", "software_version",
    "clock_skew_s", "latitude", "longitude", "position_accuracy_m", "position_time", "shift_state",
    "config_version", "config_error",
)  # fmt: skip


# Columns that are the hub's own bookkeeping, not the node's read: a resend may differ in them.
_BOOKKEEPING = frozenset({"received_time", "hub_id", "ttl"})


class ReadConflict(Exception):
    """A read id already stored with different content: reads are write-once."""

    def __init__(self, read_id: str, fields: list[str]) -> None:
        super().__init__(f"read {read_id} is already stored with different {', '.join(fields)}")
        self.read_id = read_id
        self.fields = fields


def _comparable(value: object) -> object:
    """A column value as Cassandra hands it back: timestamps in whole milliseconds, empty = null."""
    if isinstance(value, datetime):
        return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000
    if value in (None, "", b"", []):
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    return value


def differing_columns(stored: Row, new: Values, columns: Iterable[str] = READS_BY_ID) -> list[str]:
    """The read columns in which a stored ``reads_by_id`` row and new values differ."""
    return [
        c for c in columns if c not in _BOOKKEEPING and _comparable(getattr(stored, c, None)) != _comparable(new.get(c))
    ]


@dataclass(frozen=True)
class ReadRows:
    """The bound values (by column name, plus ``ttl``) for the three read tables, computed once per read."""

    by_id: Values
    by_plate: Values
    by_camera: Values


def location_quality(read: reads_pb2.PlateRead) -> tuple[str, float | None]:
    """The stored quality of a read's location and its age. Nodes that predate the quality sent
    a location only with a current fix, so theirs is a FIX."""
    q = read.location_quality
    if q == reads_pb2.LOCATION_QUALITY_UNSPECIFIED:
        return ("FIX" if read.HasField("location") else "NONE"), None
    name = reads_pb2.LocationQuality.Name(q).removeprefix("LOCATION_QUALITY_")
    return name, (read.location_age_s if read.HasField("location") else None)


def read_rows(read: reads_pb2.PlateRead, plate: str, ttl: int, hub_id: str, now: datetime) -> ReadRows:
    """Column values for one validated read (``plate`` already normalized)."""
    rid = uuid.UUID(read.read_id)
    captured = from_timestamp(read.capture_time)
    kind = NODE_KINDS.get(read.node_kind, "UNSPECIFIED")
    loc = read.location if read.HasField("location") else None
    lat = loc.latitude if loc else None
    lon = loc.longitude if loc else None
    quality, age_s = location_quality(read)
    where = {"location_quality": quality, "location_age_s": age_s}
    region = read.region or None
    box = read.plate_box
    mv = read.model_versions
    by_id = {
        "read_id": rid, "node_id": read.node_id, "camera_id": read.camera_id, "node_kind": kind,
        "capture_time": captured, "received_time": now, "hub_id": hub_id, "plate": plate,
        "confidence": read.confidence, "char_confidences": list(read.char_confidences), "region": region,
        "region_confidence": read.region_confidence, "box_x1": box.x1, "box_y1": box.y1, "box_x2": box.x2,
        "box_y2": box.y2, "frame_width": read.frame_width, "frame_height": read.frame_height,
        "plate_crop_jpeg": read.plate_crop_jpeg, "frame_jpeg": read.frame_jpeg or None,
        "latitude": lat, "longitude": lon, "gps_accuracy_m": loc.accuracy_m if loc else None,
        "heading_deg": loc.heading_deg if loc and loc.HasField("heading_deg") else None,
        "speed_mps": loc.speed_mps if loc and loc.HasField("speed_mps") else None,
        "detector_version": mv.detector or None, "ocr_version": mv.ocr or None,
        "state_model_version": mv.state_classifier or None, "model_release": mv.release or None, "ttl": ttl,
        **where,
    }  # fmt: skip
    by_plate = {
        "plate": plate, "day": date(captured.year, captured.month, captured.day), "capture_time": captured,
        "read_id": rid, "region": region, "confidence": read.confidence, "node_id": read.node_id,
        "camera_id": read.camera_id, "node_kind": kind, "latitude": lat, "longitude": lon, "ttl": ttl, **where,
    }  # fmt: skip
    by_camera = {
        "camera_id": read.camera_id, "hour": captured.replace(minute=0, second=0, microsecond=0),
        "capture_time": captured, "read_id": rid, "plate": plate, "region": region,
        "confidence": read.confidence, "node_id": read.node_id, "latitude": lat, "longitude": lon, "ttl": ttl,
        **where,
    }  # fmt: skip
    return ReadRows(by_id, by_plate, by_camera)


class ReadStore(CassandraStore):
    """Writes of plate reads and node status, and the reads the hub needs of them."""

    def __init__(self, *, session: Session, config: HubConfig) -> None:
        super().__init__(session=session, cassandra=config.cassandra)
        ks = self.keyspace
        # Write-once: the read id row is claimed with a lightweight transaction, so no node can
        # overwrite a stored read (the by-plate and by-camera rows follow only once it is ours).
        serial = ConsistencyLevel.LOCAL_SERIAL if config.cassandra.write_consistency.startswith("LOCAL") else None
        self._claim_id = self.writer(
            insert_cql(f"{ks}.reads_by_id", READS_BY_ID, ttl=True, if_not_exists=True), serial_consistency=serial
        )
        self._ins_id = self.writer(insert_cql(f"{ks}.reads_by_id", READS_BY_ID, ttl=True))
        self._ins_plate = self.writer(insert_cql(f"{ks}.reads_by_plate", READS_BY_PLATE, ttl=True))
        self._ins_camera = self.writer(insert_cql(f"{ks}.reads_by_camera", READS_BY_CAMERA, ttl=True))
        self._ins_status = self.writer(insert_cql(f"{ks}.node_status", NODE_STATUS))
        self._all_status = self.reader(f"SELECT * FROM {ks}.node_status", fetch_size=1000)
        self._one_status = self.reader(f"SELECT * FROM {ks}.node_status WHERE node_id = :node_id")
        self._set_damage = self.writer(
            f"UPDATE {ks}.node_status SET damage_note = :note, damage_reported_by = :reporter, "
            "damage_reported_time = :at WHERE node_id = :node_id"
        )
        self._camera_hours = self.reader(f"SELECT DISTINCT camera_id, hour FROM {ks}.reads_by_camera")
        self._first_in_hour = self.reader(
            f"SELECT capture_time FROM {ks}.reads_by_camera WHERE camera_id = :camera_id AND hour = :hour "
            "ORDER BY capture_time ASC LIMIT 1"
        )

    def read_writes(self, rows: ReadRows) -> list[BoundStatement]:
        """Three plain upserts of one read: the driver's ceiling that the ingest benchmark
        compares the hub with. The hub itself stores reads with :meth:`write_read`."""
        return [
            self._ins_id.bind(rows.by_id),
            self._ins_plate.bind(rows.by_plate),
            self._ins_camera.bind(rows.by_camera),
        ]

    async def write_read(self, rows: ReadRows) -> Literal["stored", "duplicate"]:
        """Store one read in all its tables, write-once; returns once every write met the
        consistency level.

        ``"duplicate"``: the same read was stored before (a resend); its index rows are written
        again, which changes nothing (and completes a first attempt cut short). Raises
        :class:`ReadConflict` when the id is stored with different content: nothing is written.
        """
        claim = await self.send(self._claim_id.bind(rows.by_id))
        first = claim[0] if claim else None
        outcome: Literal["stored", "duplicate"] = "stored"
        if first is not None and not first[0]:  # [applied] is false: the id is taken
            diff = differing_columns(first, rows.by_id)
            if diff:
                raise ReadConflict(str(rows.by_id["read_id"]), diff)
            outcome = "duplicate"
        await asyncio.gather(
            self.send(self._ins_plate.bind(rows.by_plate)), self.send(self._ins_camera.bind(rows.by_camera))
        )
        return outcome

    async def write_heartbeat(self, hb: ingest_pb2.Heartbeat, hub_id: str, now: datetime) -> None:
        cams = [{"camera_id": c.camera_id, "ok": c.ok, "frames": c.frames_received, "problem": c.problem}
                for c in hb.cameras]  # fmt: skip
        await self.run(
            self._ins_status,
            {
                "node_id": hb.node_id,
                "node_kind": NODE_KINDS.get(hb.node_kind, "UNSPECIFIED"),
                "last_heartbeat": now,
                "hub_id": hub_id,
                "queue_depth": hb.queue_depth,
                "queue_oldest_age_s": hb.queue_oldest_age_s,
                "hotlist_version": hb.hotlist_version,
                "hotlist_synced_time": (
                    from_timestamp(hb.hotlist_synced_time) if hb.HasField("hotlist_synced_time") else None
                ),
                "detector_ok": hb.detector_ok,
                "disk_free_bytes": hb.disk_free_bytes,
                "problems": list(hb.problems),
                "cameras": json.dumps(cams),
                "software_version": hb.software_version,
                "clock_skew_s": (
                    (from_timestamp(hb.sent_time) - now).total_seconds() if hb.HasField("sent_time") else None
                ),
                **_position_columns(hb),
                "shift_state": ingest_pb2.ShiftState.Name(hb.shift_state).removeprefix("SHIFT_STATE_"),
                "config_version": hb.config_version,
                "config_error": hb.config_error,
            },
        )

    def node_statuses(self) -> list[Row]:
        """Every node's latest heartbeat row, all pages (blocking: run in an executor)."""
        return list(self.rows(self._all_status))

    async def node_status(self, node_id: str) -> Row | None:
        rows = await self.run(self._one_status, {"node_id": node_id})
        return rows[0] if rows else None

    async def set_damage(self, node_id: str, note: str | None, by: str | None, at: datetime | None) -> None:
        """Open (note) or withdraw (None) the damage report kept beside the unit's status."""
        await self.run(self._set_damage, {"node_id": node_id, "note": note, "reporter": by, "at": at})

    def oldest_capture_time(self) -> datetime | None:
        """Capture time of the oldest stored read, via the camera-hour partitions (blocking)."""
        keys = sorted(self.rows(self._camera_hours), key=lambda k: k.hour)
        # Partitions whose rows all expired may still be listed: check the oldest few.
        for k in keys[:50]:
            first = next(self.rows(self._first_in_hour, {"camera_id": k.camera_id, "hour": k.hour}), None)
            if first is not None:
                return utc(first.capture_time)
        return None


def _position_columns(hb: ingest_pb2.Heartbeat) -> dict[str, Any]:
    """The heartbeat's position as node_status columns (all None when it carries none)."""
    if not hb.HasField("position"):
        return {"latitude": None, "longitude": None, "position_accuracy_m": None, "position_time": None}
    p = hb.position
    return {
        "latitude": p.latitude,
        "longitude": p.longitude,
        "position_accuracy_m": p.accuracy_m,
        "position_time": from_timestamp(hb.position_time) if hb.HasField("position_time") else None,
    }
