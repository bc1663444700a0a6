"""Cassandra access for the hub: one Cluster/Session per process, prepared statements,
token-aware routing, asynchronous writes bridged to asyncio."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from alpr.v1 import ingest_pb2, reads_pb2
from cassandra import ConsistencyLevel, ProtocolVersion
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    ResponseFuture,
    Session,
)
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, RetryPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement

from alpr_common.timestamps import from_timestamp
from hub.config import CassandraConfig, HubConfig


def connect(cfg: CassandraConfig) -> tuple[Cluster, Session]:
    """Open the process's single Cassandra session."""
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_dc)),
        retry_policy=RetryPolicy(),
        request_timeout=cfg.request_timeout_s,
        consistency_level=getattr(ConsistencyLevel, cfg.read_consistency),
    )
    cluster = Cluster(
        contact_points=cfg.contact_points,
        port=cfg.port,
        protocol_version=ProtocolVersion.V5,
        # A restarted Cassandra node is used again within seconds, not the driver's default 10 minutes.
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=10.0),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=cfg.connect_timeout_s,
        control_connection_timeout=cfg.connect_timeout_s,
    )
    return cluster, cluster.connect()


def prepare(session: Session, cql: str, consistency: int) -> PreparedStatement:
    """A prepared statement at ``consistency``, marked idempotent.

    Every statement the platform prepares writes the same values again on a retry (upserts
    keyed by ids, reads, LWTs whose outcome is checked), so the driver may retry them safely.
    """
    stmt = session.prepare(cql)
    stmt.consistency_level = consistency
    stmt.is_idempotent = True
    return stmt


def await_response(rf: ResponseFuture) -> asyncio.Future[Any]:
    """Wrap a driver ResponseFuture (completed on the driver's thread) as an asyncio future."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def ok(result: Any) -> None:
        loop.call_soon_threadsafe(_settle, fut, result, None)

    def err(exc: BaseException) -> None:
        loop.call_soon_threadsafe(_settle, fut, None, exc)

    rf.add_callbacks(ok, err)
    return fut


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


_NODE_KIND = {reads_pb2.NODE_KIND_FIXED: "FIXED", reads_pb2.NODE_KIND_MOBILE: "MOBILE"}


@dataclass(frozen=True)
class ReadRows:
    """The bound values for the three read tables, computed once per read."""

    by_id: tuple[Any, ...]
    by_plate: tuple[Any, ...]
    by_camera: tuple[Any, ...]


def read_rows(read: reads_pb2.PlateRead, plate: str, ttl: int, hub_id: str, now: datetime) -> ReadRows:
    """Column values for one validated read (``plate`` already normalized)."""
    rid = uuid.UUID(read.read_id)
    captured = from_timestamp(read.capture_time)
    kind = _NODE_KIND.get(read.node_kind, "UNSPECIFIED")
    loc = read.location if read.HasField("location") else None
    lat = loc.latitude if loc else None
    lon = loc.longitude if loc else None
    box = read.plate_box
    mv = read.model_versions
    by_id = (
        rid, read.node_id, read.camera_id, kind, captured, now, hub_id, plate, read.confidence,
        list(read.char_confidences), read.region or None, read.region_confidence,
        box.x1, box.y1, box.x2, box.y2, read.frame_width, read.frame_height,
        read.plate_crop_jpeg, read.frame_jpeg or None, lat, lon,
        loc.accuracy_m if loc else None,
        loc.heading_deg if loc and loc.HasField("heading_deg") else None,
        loc.speed_mps if loc and loc.HasField("speed_mps") else None,
        mv.detector or None, mv.ocr or None, mv.state_classifier or None, ttl,
    )  # fmt: skip
    day = date(captured.year, captured.month, captured.day)
    hour = captured.replace(minute=0, second=0, microsecond=0)
    by_plate = (
        plate, day, captured, rid, read.region or None, read.confidence, read.node_id,
        read.camera_id, kind, lat, lon, ttl,
    )  # fmt: skip
    by_camera = (
        read.camera_id, hour, captured, rid, plate, read.region or None, read.confidence,
        read.node_id, lat, lon, ttl,
    )  # fmt: skip
    return ReadRows(by_id, by_plate, by_camera)


class ReadStore:
    """Writes and reads of plate reads and node status, on a shared session."""

    def __init__(self, session: Session, config: HubConfig) -> None:
        self.session = session
        self.config = config
        ks = config.cassandra.keyspace
        self.write_cl = getattr(ConsistencyLevel, config.cassandra.write_consistency)
        self.read_cl = getattr(ConsistencyLevel, config.cassandra.read_consistency)
        self._ins_id = self._prep(
            f"INSERT INTO {ks}.reads_by_id (read_id, node_id, camera_id, node_kind, capture_time, "
            "received_time, hub_id, plate, confidence, char_confidences, region, region_confidence, "
            "box_x1, box_y1, box_x2, box_y2, frame_width, frame_height, plate_crop_jpeg, frame_jpeg, "
            "latitude, longitude, gps_accuracy_m, heading_deg, speed_mps, detector_version, "
            "ocr_version, state_model_version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "USING TTL ?",
            self.write_cl,
        )
        self._ins_plate = self._prep(
            f"INSERT INTO {ks}.reads_by_plate (plate, day, capture_time, read_id, region, confidence, "
            "node_id, camera_id, node_kind, latitude, longitude) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            self.write_cl,
        )
        self._ins_camera = self._prep(
            f"INSERT INTO {ks}.reads_by_camera (camera_id, hour, capture_time, read_id, plate, region, "
            "confidence, node_id, latitude, longitude) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
            self.write_cl,
        )
        self._ins_status = self._prep(
            f"INSERT INTO {ks}.node_status (node_id, node_kind, last_heartbeat, hub_id, queue_depth, "
            "queue_oldest_age_s, hotlist_version, hotlist_synced_time, detector_ok, disk_free_bytes, "
            "problems, cameras, software_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.write_cl,
        )
        self._get_id = self._prep(f"SELECT * FROM {ks}.reads_by_id WHERE read_id = ?", self.read_cl)

    def _prep(self, cql: str, cl: int) -> PreparedStatement:
        return prepare(self.session, cql, cl)

    async def write_read(self, rows: ReadRows) -> None:
        """Store one read in all its tables; returns once every write met the consistency level."""
        s = self.session
        await asyncio.gather(
            await_response(s.execute_async(self._ins_id, rows.by_id)),
            await_response(s.execute_async(self._ins_plate, rows.by_plate)),
            await_response(s.execute_async(self._ins_camera, rows.by_camera)),
        )

    async def write_heartbeat(self, hb: ingest_pb2.Heartbeat, hub_id: str, now: datetime) -> None:
        cams = json.dumps(
            [
                {
                    "camera_id": c.camera_id,
                    "ok": c.ok,
                    "frames": c.frames_received,
                    "problem": c.problem,
                }
                for c in hb.cameras
            ]
        )
        values = (
            hb.node_id, _NODE_KIND.get(hb.node_kind, "UNSPECIFIED"), now, hub_id, hb.queue_depth,
            hb.queue_oldest_age_s, hb.hotlist_version,
            from_timestamp(hb.hotlist_synced_time) if hb.HasField("hotlist_synced_time") else None,
            hb.detector_ok, hb.disk_free_bytes, list(hb.problems), cams, hb.software_version,
        )  # fmt: skip
        await await_response(self.session.execute_async(self._ins_status, values))

    def get_read(self, read_id: str | uuid.UUID) -> Any:
        """The stored row of one read, or None."""
        rid = read_id if isinstance(read_id, uuid.UUID) else uuid.UUID(read_id)
        return self.session.execute(self._get_id, (rid,)).one()


def existing_read_ids(session: Session, keyspace: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` are stored in reads_by_id (for checks that nothing was lost)."""
    found: set[str] = set()
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        rows = session.execute(
            f"SELECT read_id FROM {keyspace}.reads_by_id WHERE read_id IN ({','.join(['%s'] * len(chunk))})",
            [uuid.UUID(i) for i in chunk],
        )
        found |= {str(r.read_id) for r in rows}
    return found
