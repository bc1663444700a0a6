"""``FleetService`` (policy 4.1, 4.8): every edge node's latest heartbeat as stored by the
hubs in ``node_status``, for fleet operators, supervisors, admins and the dispatch bridge's
help-desk tickets; and officers' damage reports on units (policy 4.8), audited. No read data;
like the other administrative reads, listing is not written to the audit log."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC

import grpc
from alpr.v1 import fleet_pb2, fleet_pb2_grpc, ingest_pb2, reads_pb2

from alpr_common.cassandra import Row
from alpr_common.timestamps import now_utc, to_timestamp
from hub.audit import AuditLog
from hub.principal import Context
from hub.storage import ReadStore

DEFAULT_PAGE_SIZE = 100
_KINDS = {"FIXED": reads_pb2.NODE_KIND_FIXED, "MOBILE": reads_pb2.NODE_KIND_MOBILE}
_SHIFT = {"ON_SHIFT": ingest_pb2.SHIFT_STATE_ON_SHIFT, "OFF_SHIFT": ingest_pb2.SHIFT_STATE_OFF_SHIFT}


def node_status_proto(
    r: Row, hub_hotlist_version: int | None = None, hub_config_version: int | None = None
) -> fleet_pb2.NodeStatus:
    """A ``node_status`` row as the API's NodeStatus (lags against the hub's versions when given)."""
    try:
        cams = json.loads(r.cameras or "[]")
    except ValueError:
        cams = []
    msg = fleet_pb2.NodeStatus(
        node_id=r.node_id,
        node_kind=_KINDS.get(r.node_kind or "", reads_pb2.NODE_KIND_UNSPECIFIED),
        hub_id=r.hub_id or "",
        problems=list(r.problems or []),
        cameras=[
            ingest_pb2.CameraStatus(
                camera_id=str(c.get("camera_id", "")),
                frames_received=int(c.get("frames", 0)),
                ok=bool(c.get("ok", True)),
                problem=str(c.get("problem", "")),
            )
            for c in cams
        ],
        detector_ok=bool(r.detector_ok),
        hotlist_version=r.hotlist_version or 0,
        queue_depth=r.queue_depth or 0,
        queue_oldest_age_s=r.queue_oldest_age_s or 0.0,
        disk_free_bytes=r.disk_free_bytes or 0,
        software_version=r.software_version or "",
    )
    if r.last_heartbeat is not None:
        msg.last_heartbeat_time.CopyFrom(to_timestamp(r.last_heartbeat))
    if r.hotlist_synced_time is not None:
        msg.hotlist_synced_time.CopyFrom(to_timestamp(r.hotlist_synced_time))
    if r.clock_skew_s is not None:
        msg.clock_skew_s = r.clock_skew_s
    if hub_hotlist_version is not None:
        msg.hotlist_lag_versions = max(0, hub_hotlist_version - (r.hotlist_version or 0))
    if r.latitude is not None and r.longitude is not None:
        msg.last_position.CopyFrom(
            reads_pb2.GeoPoint(latitude=r.latitude, longitude=r.longitude, accuracy_m=r.position_accuracy_m or 0.0)
        )
        if r.position_time is not None:
            msg.last_position_time.CopyFrom(to_timestamp(r.position_time))
    msg.shift_state = _SHIFT.get(r.shift_state or "", ingest_pb2.SHIFT_STATE_UNSPECIFIED)
    msg.config_version = getattr(r, "config_version", None) or 0
    msg.config_error = getattr(r, "config_error", None) or ""
    if hub_config_version is not None:
        msg.config_lag_versions = max(0, hub_config_version - msg.config_version)
    note = getattr(r, "damage_note", None)
    if note:
        msg.damage.note, msg.damage.reported_by = note, getattr(r, "damage_reported_by", None) or ""
        if getattr(r, "damage_reported_time", None) is not None:
            msg.damage.reported_time.CopyFrom(to_timestamp(r.damage_reported_time))
    return msg


def has_problem(n: fleet_pb2.NodeStatus) -> bool:
    """Whether the node's own heartbeat reports something wrong."""
    return bool(n.problems) or not n.detector_ok or any(not c.ok for c in n.cameras) or n.HasField("damage")


def _token(node_id: str) -> str:
    return base64.urlsafe_b64encode(node_id.encode()).decode()


def _after(token: str) -> str:
    return base64.urlsafe_b64decode(token.encode()).decode()


class FleetServicer(fleet_pb2_grpc.FleetServiceServicer):
    def __init__(
        self,
        *,
        reads: ReadStore,
        hotlist_version: Callable[[], int] | None = None,
        config_version: Callable[[], int] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        """``hotlist_version``, ``config_version``: the hub's current versions (for each node's lag)."""
        self.reads = reads
        self.audit = audit
        self.hotlist_version = hotlist_version
        self.config_version = config_version

    async def ListNodes(
        self, request: fleet_pb2.FleetServiceListNodesRequest, context: Context
    ) -> fleet_pb2.FleetServiceListNodesResponse:
        size = request.page_size or DEFAULT_PAGE_SIZE  # the request rules keep it within 0-1000
        after = ""
        if request.page_token:
            try:
                after = _after(request.page_token)
            except (binascii.Error, UnicodeDecodeError, ValueError):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token is not valid; start again")
        if request.node_id:
            row = await self.reads.node_status(request.node_id)
            rows = [row] if row is not None else []
        else:
            rows = await asyncio.get_running_loop().run_in_executor(None, self.reads.node_statuses)
        current = self.hotlist_version() if self.hotlist_version is not None else None
        cfg = self.config_version() if self.config_version is not None else None
        nodes = sorted((node_status_proto(r, current, cfg) for r in rows if r.node_id > after), key=lambda n: n.node_id)
        if request.problems_only:
            nodes = [n for n in nodes if has_problem(n)]
        page = nodes[:size]
        more = len(nodes) > size
        return fleet_pb2.FleetServiceListNodesResponse(
            nodes=page, next_page_token=_token(page[-1].node_id) if more else ""
        )

    async def ReportDamage(
        self, request: fleet_pb2.ReportDamageRequest, context: Context
    ) -> fleet_pb2.ReportDamageResponse:
        node_id, note, by = request.node_id.strip(), request.note.strip(), request.reported_by.strip()
        if not by:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "reported_by is required: the officer's id")
        if not request.repaired and not note:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "note is required: say what is wrong (e.g. 'lens cracked')"
            )
        if await self.reads.node_status(node_id) is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no unit {node_id!r} has ever sent a heartbeat to these hubs: check the id (alpr nodes status)",
            )
        if request.repaired:
            await self.reads.set_damage(node_id, None, None, None)
        else:
            await self.reads.set_damage(node_id, note, by, now_utc())
        if self.audit is not None:
            action = "fleet.damage_repaired" if request.repaired else "fleet.damage_reported"
            await self.audit.record_call(action, fallback_actor=by, details={"node_id": node_id, "note": note})
        row = await self.reads.node_status(node_id)
        assert row is not None
        return fleet_pb2.ReportDamageResponse(node=node_status_proto(row))


async def restore_heartbeat_gauge(reads: ReadStore, set_gauge: Callable[[str, float], None]) -> int:
    """At start-up: every node's last heartbeat from ``node_status`` into the gauge, so a node
    that died before a hub restart is still seen as silent (and alerted on) after it."""
    rows = await asyncio.get_running_loop().run_in_executor(None, reads.node_statuses)
    n = 0
    for r in rows:
        if r.last_heartbeat is not None:
            set_gauge(r.node_id, r.last_heartbeat.replace(tzinfo=UTC).timestamp())
            n += 1
    return n
