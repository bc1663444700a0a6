"""SearchService (policy §1, 3.1): where and when was a plate seen, what did a camera see.

Every query must name its purpose and a case/incident number (INVALID_ARGUMENT otherwise)
and is written to the audit log with who asked, why, and how many reads matched (refused
queries too). Plates match exactly, with wildcards (``?`` one character, ``*`` any run) or
fuzzily (OCR look-alikes and one missing/extra character, as the hot-list matcher).

Query plan: an exact plate reads ``reads_by_plate`` one partition per UTC day of the range;
wildcard / fuzzy plates first list the (plate, day) partition keys of the range
(``SELECT DISTINCT``: partition keys only) and read the matching partitions; camera
searches read ``reads_by_camera`` one partition per camera-hour; an area alone lists the
(camera, hour) partition keys. Results are newest first, at most ``MAX_RESULTS``, paged
with an opaque token (each page re-runs the query and is audited).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
from alpr.v1 import search_pb2, search_pb2_grpc
from cassandra.cluster import Session

from alpr_common.cassandra import CassandraConfig, CassandraStore, Row, Statement, Values
from alpr_common.matching import canonical
from alpr_common.plates import normalize_plate
from alpr_common.timestamps import from_timestamp, to_timestamp, utc
from hub.audit import AuditLog
from hub.config import HubConfig
from hub.principal import Context, principal_from

log = logging.getLogger(__name__)

MAX_RESULTS = 10_000
_PARALLEL = 16
_WILDCARD_OK = re.compile(r"^[A-Z0-9?*]+$")


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """``AB?1*`` → a regex matching the whole plate."""
    return re.compile("".join("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern))


def fuzzy_match(query: str, plate: str, one_char_min_length: int = 5) -> bool:
    """Same plate up to OCR look-alikes, or one character missing/extra (plates ≥ min length)."""
    q, p = canonical(query), canonical(plate)
    if q == p:
        return True
    if abs(len(q) - len(p)) != 1:
        return False
    short, long_ = (q, p) if len(q) < len(p) else (p, q)
    if len(long_) < one_char_min_length:
        return False
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass(frozen=True)
class Hit:
    read_id: str
    plate: str
    region: str
    confidence: float
    capture_time: datetime
    node_id: str
    camera_id: str
    latitude: float | None
    longitude: float | None

    def to_proto(self) -> search_pb2.SearchHit:
        return search_pb2.SearchHit(
            read_id=self.read_id,
            plate=self.plate,
            region=self.region,
            confidence=self.confidence,
            capture_time=to_timestamp(self.capture_time),
            node_id=self.node_id,
            camera_id=self.camera_id,
            latitude=self.latitude or 0.0,
            longitude=self.longitude or 0.0,
        )


class SearchError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ReadIndex(CassandraStore):
    """The read tables' partitions as a search sees them (all pages, off the event loop)."""

    def __init__(self, *, session: Session, cassandra: CassandraConfig) -> None:
        super().__init__(session=session, cassandra=cassandra)
        ks = self.keyspace
        cols = "plate, capture_time, read_id, region, confidence, node_id, camera_id, latitude, longitude"
        self.by_plate = self.reader(
            f"SELECT {cols} FROM {ks}.reads_by_plate WHERE plate = :plate AND day = :day "
            "AND capture_time >= :start AND capture_time <= :end"
        )
        self.by_camera = self.reader(
            f"SELECT {cols} FROM {ks}.reads_by_camera WHERE camera_id = :camera_id AND hour = :hour "
            "AND capture_time >= :start AND capture_time <= :end"
        )
        self.plate_keys = self.reader(f"SELECT DISTINCT plate, day FROM {ks}.reads_by_plate", fetch_size=5000)
        self.camera_keys = self.reader(f"SELECT DISTINCT camera_id, hour FROM {ks}.reads_by_camera", fetch_size=5000)
        self._sem = asyncio.Semaphore(_PARALLEL)

    async def all(self, stmt: Statement, values: Values | None = None) -> list[Row]:
        """Every row (all pages) of one query, off the event loop."""
        async with self._sem:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: list(self.rows(stmt, values)))


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, *, index: ReadIndex, config: HubConfig, audit: AuditLog) -> None:
        self.index = index
        self.config = config
        self.audit = audit

    # -- the query ----------------------------------------------------------------------
    def _plan(self, req: search_pb2.SearchRequest, now: datetime) -> dict[str, Any]:
        if not req.purpose.strip():
            raise SearchError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "purpose is required: say why you search (policy §1: law-enforcement purposes only)",
            )
        if not req.case_number.strip():
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "case_number is required: the case or incident number")
        retention = timedelta(seconds=self.config.retention.read_ttl_seconds)
        end = from_timestamp(req.end_time) if req.HasField("end_time") else now
        start = from_timestamp(req.start_time) if req.HasField("start_time") else end - retention
        start = max(start, now - retention - timedelta(days=1))
        if end < start:
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "end_time is before start_time")
        plate = normalize_plate(req.plate)
        mode = req.mode or search_pb2.PLATE_MATCH_MODE_EXACT
        if plate:
            if mode == search_pb2.PLATE_MATCH_MODE_PARTIAL:
                if not _WILDCARD_OK.match(plate):
                    raise SearchError(
                        grpc.StatusCode.INVALID_ARGUMENT, "partial plate: only A-Z, 0-9 and the wildcards ? and *"
                    )
            elif not re.fullmatch(r"[A-Z0-9]+", plate):
                raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, f"plate {req.plate!r}: only A-Z and 0-9")
        area = req.area if req.HasField("area") else None
        if area is not None and (area.min_latitude > area.max_latitude or area.min_longitude > area.max_longitude):
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "area: min must not exceed max")
        if not plate and not req.camera_ids and area is None:
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "give a plate, camera ids or an area to search for")
        return {
            "plate": plate,
            "mode": search_pb2.PlateMatchMode.Name(mode),
            "start": start,
            "end": end,
            "cameras": sorted(set(req.camera_ids)),
            "area": [area.min_latitude, area.min_longitude, area.max_latitude, area.max_longitude] if area else None,
        }

    def _plate_filter(self, plan: dict[str, Any]) -> Callable[[str], bool]:
        plate, mode = plan["plate"], plan["mode"]
        if not plate:
            return lambda p: True
        if mode == "PLATE_MATCH_MODE_PARTIAL":
            rx = wildcard_regex(plate)
            return lambda p: rx.fullmatch(p) is not None
        if mode == "PLATE_MATCH_MODE_FUZZY":
            n = self.config.hotlists.match.one_char_min_length
            return lambda p: fuzzy_match(plate, p, n)
        return lambda p: p == plate

    async def run_query(self, plan: dict[str, Any]) -> list[Hit]:
        start, end = plan["start"], plan["end"]
        days = [(start + timedelta(days=i)).date() for i in range((end.date() - start.date()).days + 1)]
        matches = self._plate_filter(plan)
        rows: list[Row] = []
        if plan["plate"] and plan["mode"] == "PLATE_MATCH_MODE_EXACT":
            parts = [(plan["plate"], d) for d in days]
        elif plan["plate"]:
            keys = await self.index.all(self.index.plate_keys)
            dayset = set(days)
            parts = [(k.plate, k.day.date() if not isinstance(k.day, date) else k.day) for k in keys]
            parts = [(p, d) for p, d in parts if d in dayset and matches(p)]
        else:
            parts = []
        if parts:
            window = {"start": start, "end": end}
            by_plate = self.index.by_plate
            results = await asyncio.gather(
                *(self.index.all(by_plate, {"plate": p, "day": d, **window}) for p, d in parts)
            )
        else:
            hour0 = start.replace(minute=0, second=0, microsecond=0)
            hours = [hour0 + timedelta(hours=i) for i in range(int((end - hour0).total_seconds() // 3600) + 1)]
            if plan["plate"]:
                results = []
            elif plan["cameras"]:
                cparts = [(c, h) for c in plan["cameras"] for h in hours]
                results = await self._camera_hours(cparts, start, end)
            else:
                keys = await self.index.all(self.index.camera_keys)
                hourset = {h.replace(tzinfo=None) for h in hours}
                cparts = [(k.camera_id, k.hour) for k in keys if k.hour.replace(tzinfo=None) in hourset]
                results = await self._camera_hours(cparts, start, end)
        for r in results:
            rows.extend(r)
        cams = set(plan["cameras"])
        area = plan["area"]
        hits: dict[str, Hit] = {}
        for r in rows:
            if not matches(r.plate) or (cams and r.camera_id not in cams):
                continue
            if area is not None and (
                r.latitude is None
                or r.longitude is None
                or not (area[0] <= r.latitude <= area[2] and area[1] <= r.longitude <= area[3])
            ):
                continue
            hits[str(r.read_id)] = Hit(
                str(r.read_id), r.plate, r.region or "", r.confidence or 0.0, utc(r.capture_time),
                r.node_id or "", r.camera_id or "", r.latitude, r.longitude,
            )  # fmt: skip
        return sorted(hits.values(), key=lambda h: (h.capture_time, h.read_id), reverse=True)[:MAX_RESULTS]

    async def _camera_hours(self, parts: list[tuple[str, datetime]], start: datetime, end: datetime) -> list[list[Row]]:
        by_camera, window = self.index.by_camera, {"start": start, "end": end}
        return await asyncio.gather(
            *(self.index.all(by_camera, {"camera_id": c, "hour": h, **window}) for c, h in parts)
        )

    async def Search(self, request: search_pb2.SearchRequest, context: Context) -> search_pb2.SearchResponse:
        p = principal_from()
        actor, role = (p.actor, p.role) if p else ("anonymous", "")
        now = datetime.now(UTC)
        offset, token_fp = 0, ""
        if request.page_token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(request.page_token.encode()))
                offset, token_fp = int(tok["o"]), str(tok["f"])
                now = datetime.fromtimestamp(float(tok["n"]), UTC)  # pages share the first page's "now"
            except Exception:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token is not valid; start again")
        try:
            plan = self._plan(request, now)
        except SearchError as e:
            await self.audit.record(
                actor, "search", role=role, purpose=request.purpose, case_number=request.case_number,
                details={"refused": e.message}, outcome="refused",
            )  # fmt: skip
            await context.abort(e.code, e.message)
            raise
        fingerprint = hashlib.sha256(json.dumps(plan, default=str, sort_keys=True).encode()).hexdigest()[:16]
        if request.page_token and token_fp != fingerprint:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "page_token does not belong to this query; start again"
            )
        size = min(max(request.page_size or 100, 1), 1000)
        hits = await self.run_query(plan)
        page = hits[offset : offset + size]
        nxt = ""
        if offset + size < len(hits):
            nxt = base64.urlsafe_b64encode(
                json.dumps({"o": offset + size, "f": fingerprint, "n": now.timestamp()}).encode()
            ).decode()
        details = {k: v for k, v in plan.items() if k not in ("start", "end")}
        details.update(start=plan["start"].isoformat(), end=plan["end"].isoformat(), offset=offset, returned=len(page))
        rec = await self.audit.record(
            actor, "search", role=role, purpose=request.purpose.strip(), case_number=request.case_number.strip(),
            details=details, result_count=len(hits),
        )  # fmt: skip
        return search_pb2.SearchResponse(
            hits=[h.to_proto() for h in page], next_page_token=nxt, audit_ref=f"{rec.chain}/{rec.seq}"
        )
