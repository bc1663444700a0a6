"""EvidenceService (policy 5.4-5.5): reads needed for an investigation are exported.

Exporting copies each read, with its images, into ``evidence_reads`` (no TTL), linked to
the case: that copy is the only read data that outlives the 60-day retention. Evidence is
append-only: a read's copy in a case is written once (``IF NOT EXISTS``), so exporting it
again never replaces the copy, its exporter or its purpose; every export is a row of its own
in ``evidence_exports`` (who, when, why, which reads). Nothing here
touches the read tables: their TTL is never extended and no read is deleted. Every export
is audited (who, case, purpose, which reads). The operator CLI (``alpr export``) writes the
package to disk with SHA-256 digests (``alpr_common/operator/evidence.py``).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import grpc
from alpr.v1 import evidence_pb2, evidence_pb2_grpc, reads_pb2
from cassandra.cluster import Session
from cassandra.util import datetime_from_uuid1, uuid_from_time

from alpr_common.cassandra import CassandraConfig, CassandraStore, Row, Statement, Values
from alpr_common.timestamps import to_timestamp, utc
from hub.audit import AuditLog
from hub.principal import Context, principal_from

_KIND = {"FIXED": reads_pb2.NODE_KIND_FIXED, "MOBILE": reads_pb2.NODE_KIND_MOBILE}
MAX_READS_PER_EXPORT = 1000


def row_to_read(r: Row) -> reads_pb2.PlateRead:
    """A ``reads_by_id`` row back into the PlateRead the node sent (normalized plate)."""
    read = reads_pb2.PlateRead(
        read_id=str(r.read_id),
        node_id=r.node_id or "",
        camera_id=r.camera_id or "",
        node_kind=_KIND.get(r.node_kind or "", reads_pb2.NODE_KIND_UNSPECIFIED),
        capture_time=to_timestamp(r.capture_time),
        plate_text=r.plate or "",
        confidence=r.confidence or 0.0,
        char_confidences=list(r.char_confidences or []),
        region=r.region or "",
        region_confidence=r.region_confidence or 0.0,
        plate_box=reads_pb2.BoundingBox(x1=r.box_x1 or 0, y1=r.box_y1 or 0, x2=r.box_x2 or 0, y2=r.box_y2 or 0),
        plate_crop_jpeg=r.plate_crop_jpeg or b"",
        frame_jpeg=r.frame_jpeg or b"",
        frame_width=r.frame_width or 0,
        frame_height=r.frame_height or 0,
        model_versions=reads_pb2.ModelVersions(
            detector=r.detector_version or "",
            ocr=r.ocr_version or "",
            state_classifier=r.state_model_version or "",
            release=getattr(r, "model_release", None) or "",
        ),
    )
    if r.latitude is not None and r.longitude is not None:
        loc = reads_pb2.GeoPoint(latitude=r.latitude, longitude=r.longitude, accuracy_m=r.gps_accuracy_m or 0.0)
        if r.heading_deg is not None:
            loc.heading_deg = r.heading_deg
        if r.speed_mps is not None:
            loc.speed_mps = r.speed_mps
        read.location.CopyFrom(loc)
    return read


class EvidenceStore(CassandraStore):
    """Reads by id and the evidence copies (``evidence_reads``, no TTL)."""

    def __init__(self, *, session: Session, cassandra: CassandraConfig) -> None:
        super().__init__(session=session, cassandra=cassandra)
        ks = self.keyspace
        self.get_read = self.reader(f"SELECT * FROM {ks}.reads_by_id WHERE read_id = :read_id")
        # USING TTL 0: evidence never expires, whatever the table default is. IF NOT EXISTS: the
        # first copy of a read in a case stands; a re-export gets that copy back.
        self.ins_evidence = self.writer(
            f"INSERT INTO {ks}.evidence_reads (case_number, read_id, read, plate, capture_time, exported_time, "
            "exported_by, purpose) VALUES (:case_number, :read_id, :read, :plate, :capture_time, :exported_time, "
            ":exported_by, :purpose) IF NOT EXISTS USING TTL 0"
        )
        self.ins_export = self.writer(
            f"INSERT INTO {ks}.evidence_exports (case_number, export_id, read_ids, exported_by, purpose) "
            "VALUES (:case_number, :export_id, :read_ids, :exported_by, :purpose) USING TTL 0"
        )
        self.case_reads = self.reader(f"SELECT * FROM {ks}.evidence_reads WHERE case_number = :case_number")
        self.case_exports = self.reader(f"SELECT * FROM {ks}.evidence_exports WHERE case_number = :case_number")

    async def keep(self, values: dict[str, Any]) -> Row:
        """Write an evidence copy unless the case already holds the read; the row that stands."""
        rows = await self.run(self.ins_evidence, values)
        if rows and not rows[0][0]:  # [applied] false: the existing row comes back
            return rows[0]
        return SimpleNamespace(**values)

    async def all(self, stmt: Statement, values: Values) -> list[Row]:
        """Every row of a query (all pages), off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: list(self.rows(stmt, values)))


class EvidenceServicer(evidence_pb2_grpc.EvidenceServiceServicer):
    def __init__(self, *, store: EvidenceStore, audit: AuditLog) -> None:
        self.store = store
        self.audit = audit

    async def ExportEvidence(
        self, request: evidence_pb2.ExportEvidenceRequest, context: Context
    ) -> evidence_pb2.ExportEvidenceResponse:
        p = principal_from()
        actor, role = (p.actor, p.role) if p else ("anonymous", "")
        case, purpose = request.case_number.strip(), request.purpose.strip()
        problem = None
        if not case:
            problem = "case_number is required: evidence is always linked to a case"
        elif not purpose:
            problem = "purpose is required: say why the reads are exported"
        elif not request.read_ids:
            problem = "read_ids is empty: name the reads to export"
        elif len(request.read_ids) > MAX_READS_PER_EXPORT:
            problem = f"at most {MAX_READS_PER_EXPORT} reads per export"
        ids: list[uuid.UUID] = []
        if problem is None:
            try:
                ids = [uuid.UUID(x) for x in dict.fromkeys(request.read_ids)]
            except ValueError:
                problem = "read_ids must be UUIDs"
        if problem is not None:
            await self.audit.record(
                actor, "evidence.export", role=role, purpose=purpose, case_number=case,
                details={"refused": problem}, outcome="refused",
            )  # fmt: skip
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        now = datetime.now(UTC).replace(microsecond=0)
        rows = await asyncio.gather(*(self.store.one(self.store.get_read, {"read_id": rid}) for rid in ids))
        missing = [str(rid) for rid, r in zip(ids, rows, strict=True) if r is None]
        found = [(rid, r) for rid, r in zip(ids, rows, strict=True) if r is not None]
        kept = await asyncio.gather(
            *(
                self.store.keep(
                    {
                        "case_number": case,
                        "read_id": rid,
                        "read": row_to_read(r).SerializeToString(),
                        "plate": r.plate,
                        "capture_time": r.capture_time,
                        "exported_time": now,
                        "exported_by": actor,
                        "purpose": purpose,
                    }
                )
                for rid, r in found
            )
        )
        out = [_evidence_read(case, k) for k in kept]
        # Full precision, not the copy's whole-second ``now``: exports of one second must still
        # sort in the order they were made (the id orders the case's export history).
        export_id = uuid_from_time(datetime.now(UTC))
        await self.store.run(
            self.store.ins_export,
            {
                "case_number": case,
                "export_id": export_id,
                "read_ids": [rid for rid, _ in found],
                "exported_by": actor,
                "purpose": purpose,
            },
        )
        again = [e.read.read_id for e in out if e.exported_by != actor or e.purpose != purpose]
        await self.audit.record(
            actor, "evidence.export", role=role, purpose=purpose, case_number=case,
            details={"read_ids": [r.read.read_id for r in out], "missing": missing, "export_id": str(export_id),
                     "already_held": again},
            result_count=len(out),
        )  # fmt: skip
        return evidence_pb2.ExportEvidenceResponse(
            reads=out,
            missing_read_ids=missing,
            exported_by=actor,
            exported_time=to_timestamp(utc(datetime_from_uuid1(export_id))),  # as GetEvidence reports it
            export_id=str(export_id),
        )

    async def GetEvidence(
        self, request: evidence_pb2.GetEvidenceRequest, context: Context
    ) -> evidence_pb2.GetEvidenceResponse:
        p = principal_from()
        case = request.case_number.strip()
        rows = await self.store.all(self.store.case_reads, {"case_number": case})
        out = [_evidence_read(case, r) for r in rows]
        exports = [
            evidence_pb2.EvidenceExport(
                export_id=str(x.export_id),
                read_ids=[str(i) for i in x.read_ids or []],
                exported_by=x.exported_by or "",
                purpose=x.purpose or "",
                exported_time=to_timestamp(utc(datetime_from_uuid1(x.export_id))),
            )
            for x in await self.store.all(self.store.case_exports, {"case_number": case})
        ]
        await self.audit.record(
            p.actor if p else "anonymous", "evidence.get", role=p.role if p else "",
            case_number=request.case_number.strip(), result_count=len(out),
        )  # fmt: skip
        return evidence_pb2.GetEvidenceResponse(reads=out, exports=exports)


def _evidence_read(case: str, r: Row) -> evidence_pb2.EvidenceRead:
    """An ``evidence_reads`` row (or the values just written) as the API returns it."""
    return evidence_pb2.EvidenceRead(
        case_number=case,
        read=reads_pb2.PlateRead.FromString(r.read),
        exported_time=to_timestamp(utc(r.exported_time)),
        exported_by=r.exported_by or "",
        purpose=r.purpose or "",
    )
