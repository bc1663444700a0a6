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
with an opaque token (each page re-runs the query and is audited); partitions are read
newest time slice first and a page stops reading once it is full.

Bounds (``search`` in the config): the plate as typed, the pattern's length and wildcards,
the number of cameras and of partitions one query may read; beyond them the query is
refused with INVALID_ARGUMENT (and audited) before it costs anything. Patterns are matched
by an automaton (linear in the plate), never a backtracking regex, and listing and
filtering run off the event loop, so no query stalls the hub's other calls.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
from alpr.v1 import reads_pb2, search_pb2, search_pb2_grpc
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
MAX_PAGE_WITH_CROPS = 100  # crops are a few KB each: a page stays well inside the message limit
_WILDCARD_OK = re.compile(r"^[A-Z0-9?*]+$")
_MAX_RAW_PLATE = 32  # characters of the plate as typed, before normalization
_MAX_PURPOSE = 500
_MAX_CASE = 100
_MAX_CAMERA_ID = 64


def collapse_stars(pattern: str) -> str:
    """``A***B`` → ``A*B``: the same pattern, fewer states."""
    return re.sub(r"\*+", "*", pattern)


def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A whole-plate matcher for ``?`` (one character) and ``*`` (any run) without backtracking.

    Simulates the pattern's automaton: one pass over the plate, keeping the set of pattern
    positions reachable so far (a bit mask), so the cost is O(len(plate) * len(pattern))
    whatever the pattern, where a backtracking regex of ``*`` runs is exponential.
    """
    toks = collapse_stars(pattern)
    n = len(toks)
    stars = 0
    for i, t in enumerate(toks):
        if t == "*":
            stars |= 1 << i

    def closure(states: int) -> int:
        # a '*' at position i may match nothing: position i+1 is reachable too
        while True:
            more = states | ((states & stars) << 1)
            if more == states:
                return states
            states = more

    start_states = closure(1)
    final = 1 << n

    def match(text: str) -> bool:
        states = start_states
        for ch in text:
            nxt = states & stars  # a '*' consumes the character and stays
            rest = states & ~stars
            while rest:
                low = rest & -rest
                i = low.bit_length() - 1
                if i < n and (toks[i] == "?" or toks[i] == ch):
                    nxt |= low << 1
                rest ^= low
            states = closure(nxt)
            if not states:
                return False
        return bool(states & final)

    return match


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
    location_quality: str | None = None
    location_age_s: float | None = None

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
            location_quality=stored_location_quality(self.location_quality, self.latitude is not None),
            location_age_s=self.location_age_s or 0.0,
        )


def stored_location_quality(stored: str | None, has_position: bool) -> reads_pb2.LocationQuality.ValueType:
    """A stored quality as the proto enum; rows written before qualities were stored had a
    position only with a current fix."""
    if stored:
        return reads_pb2.LocationQuality.Value(f"LOCATION_QUALITY_{stored}")
    return reads_pb2.LOCATION_QUALITY_FIX if has_position else reads_pb2.LOCATION_QUALITY_NONE


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
        cols = (
            "plate, capture_time, read_id, region, confidence, node_id, camera_id, latitude, longitude, "
            "location_quality, location_age_s"
        )
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
        self.crop = self.reader(f"SELECT plate_crop_jpeg FROM {ks}.reads_by_id WHERE read_id = :read_id")
        self._sem = asyncio.Semaphore(_PARALLEL)

    async def crops(self, read_ids: list[str]) -> dict[str, bytes]:
        """The stored plate crop of each read (reads without one are left out)."""

        async def one(read_id: str) -> tuple[str, bytes]:
            rows = await self.all(self.crop, {"read_id": uuid.UUID(read_id)})
            return read_id, bytes(rows[0].plate_crop_jpeg or b"") if rows else b""

        return {rid: jpeg for rid, jpeg in await asyncio.gather(*(one(r) for r in read_ids)) if jpeg}

    async def all(self, stmt: Statement, values: Values | None = None) -> list[Row]:
        """Every row (all pages) of one query, off the event loop."""
        async with self._sem:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: list(self.rows(stmt, values)))

    async def keys(self, stmt: Statement, keep: Callable[[Row], bool], limit: int) -> list[Row] | None:
        """The partition keys ``keep`` selects, listed and filtered off the event loop; None
        as soon as more than ``limit`` match (the query would be too broad)."""

        def scan() -> list[Row] | None:
            out: list[Row] = []
            for k in self.rows(stmt):
                if keep(k):
                    out.append(k)
                    if len(out) > limit:
                        return None
            return out

        return await asyncio.get_running_loop().run_in_executor(None, scan)


def _day(value: object) -> date:
    """A ``date`` column as a ``date`` (the driver may hand back its own Date type)."""
    return value if isinstance(value, date) else value.date()  # type: ignore[attr-defined]


def _filter_rows(
    results: list[list[Row]], matches: Callable[[str], bool], cams: set[str], area: list[float] | None
) -> dict[str, Hit]:
    """The rows that match the plate, cameras and area, as hits by read id (CPU work: off the loop)."""
    hits: dict[str, Hit] = {}
    for rows in results:
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
                r.node_id or "", r.camera_id or "", r.latitude, r.longitude, r.location_quality, r.location_age_s,
            )  # fmt: skip
    return hits


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, *, index: ReadIndex, config: HubConfig, audit: AuditLog) -> None:
        self.index = index
        self.config = config
        self.audit = audit

    # -- the query ----------------------------------------------------------------------
    def _plan(self, req: search_pb2.SearchRequest, now: datetime) -> dict[str, Any]:
        lim = self.config.search
        if not req.purpose.strip():
            raise SearchError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "purpose is required: say why you search (policy §1: law-enforcement purposes only)",
            )
        if len(req.purpose) > _MAX_PURPOSE:
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, f"purpose is longer than {_MAX_PURPOSE} characters")
        if not req.case_number.strip():
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "case_number is required: the case or incident number")
        if len(req.case_number) > _MAX_CASE:
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, f"case_number is longer than {_MAX_CASE} characters")
        retention = timedelta(seconds=self.config.retention.read_ttl_seconds)
        end = from_timestamp(req.end_time) if req.HasField("end_time") else now
        start = from_timestamp(req.start_time) if req.HasField("start_time") else end - retention
        start = max(start, now - retention - timedelta(days=1))
        end = min(end, now + timedelta(days=1))
        if end < start:
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "end_time is before start_time")
        if len(req.plate) > _MAX_RAW_PLATE:
            raise SearchError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"plate is {len(req.plate)} characters long; at most {_MAX_RAW_PLATE} (a plate or a short pattern)",
            )
        plate = normalize_plate(req.plate)
        mode = req.mode or search_pb2.PLATE_MATCH_MODE_EXACT
        if plate:
            if mode == search_pb2.PLATE_MATCH_MODE_PARTIAL:
                if not _WILDCARD_OK.match(plate):
                    raise SearchError(
                        grpc.StatusCode.INVALID_ARGUMENT, "partial plate: only A-Z, 0-9 and the wildcards ? and *"
                    )
                plate = collapse_stars(plate)
                wildcards = sum(plate.count(c) for c in "?*")
                if len(plate) > lim.max_pattern_length or wildcards > lim.max_wildcards:
                    raise SearchError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"partial plate {plate!r}: at most {lim.max_pattern_length} characters and "
                        f"{lim.max_wildcards} wildcards ('*' runs count once); give more of the plate",
                    )
            elif not re.fullmatch(r"[A-Z0-9]+", plate):
                raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, f"plate {req.plate!r}: only A-Z and 0-9")
            elif len(plate) > lim.max_pattern_length:
                raise SearchError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"plate is longer than {lim.max_pattern_length} characters"
                )
        cameras = sorted(set(req.camera_ids))
        if len(cameras) > lim.max_cameras:
            raise SearchError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(cameras)} camera ids; at most {lim.max_cameras} per query: split the search",
            )
        if any(not c or len(c) > _MAX_CAMERA_ID for c in cameras):
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, f"camera ids must be 1-{_MAX_CAMERA_ID} characters")
        area = req.area if req.HasField("area") else None
        if area is not None and not all(
            math.isfinite(v) for v in (area.min_latitude, area.min_longitude, area.max_latitude, area.max_longitude)
        ):
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "area: coordinates must be numbers")
        if area is not None and (area.min_latitude > area.max_latitude or area.min_longitude > area.max_longitude):
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "area: min must not exceed max")
        if not plate and not cameras and area is None:
            raise SearchError(grpc.StatusCode.INVALID_ARGUMENT, "give a plate, camera ids or an area to search for")
        if cameras and not plate:
            hours = int((end - start).total_seconds() // 3600) + 2
            if len(cameras) * hours > lim.max_partitions:
                raise SearchError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"{len(cameras)} camera(s) over {hours} hours is {len(cameras) * hours} camera-hours; at most "
                    f"{lim.max_partitions} per query: narrow the time range or the cameras",
                )
        return {
            "plate": plate,
            "mode": search_pb2.PlateMatchMode.Name(mode),
            "start": start,
            "end": end,
            "cameras": cameras,
            "area": [area.min_latitude, area.min_longitude, area.max_latitude, area.max_longitude] if area else None,
        }

    def _plate_filter(self, plan: dict[str, Any]) -> Callable[[str], bool]:
        plate, mode = plan["plate"], plan["mode"]
        if not plate:
            return lambda p: True
        if mode == "PLATE_MATCH_MODE_PARTIAL":
            return glob_matcher(plate)
        if mode == "PLATE_MATCH_MODE_FUZZY":
            n = self.config.hotlists.match.one_char_min_length
            return lambda p: fuzzy_match(plate, p, n)
        return lambda p: p == plate

    def _too_broad(self, what: str) -> SearchError:
        return SearchError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the query {what} more than {self.config.search.max_partitions} partitions: "
            "narrow the time range, the plate pattern or the area",
        )

    async def _partitions(self, plan: dict[str, Any]) -> list[list[tuple[Statement, Values]]]:
        """The partitions to read, grouped by time slice (a day or an hour), newest slice first.

        Slices are disjoint in time, so once the hits of the first k slices fill a page, no
        later slice can hold a newer hit: the query stops there (paging reads only what it needs).
        """
        start, end = plan["start"], plan["end"]
        window = {"start": start, "end": end}
        limit = self.config.search.max_partitions
        if plan["plate"]:
            days = [(start + timedelta(days=i)).date() for i in range((end.date() - start.date()).days + 1)]
            if plan["mode"] == "PLATE_MATCH_MODE_EXACT":
                keys = [(plan["plate"], d) for d in days]
            else:
                matches, dayset = self._plate_filter(plan), set(days)
                found = await self.index.keys(
                    self.index.plate_keys, lambda k: _day(k.day) in dayset and matches(k.plate), limit
                )
                if found is None:
                    raise self._too_broad("matches")
                keys = [(k.plate, _day(k.day)) for k in found]
            by_day: dict[date, list[tuple[Statement, Values]]] = {}
            for p, d in keys:
                by_day.setdefault(d, []).append((self.index.by_plate, {"plate": p, "day": d, **window}))
            return [by_day[d] for d in sorted(by_day, reverse=True)]
        hour0 = start.replace(minute=0, second=0, microsecond=0)
        hours = [hour0 + timedelta(hours=i) for i in range(int((end - hour0).total_seconds() // 3600) + 1)]
        if plan["cameras"]:
            hkeys = [(c, h) for c in plan["cameras"] for h in hours]
        else:
            hourset = {h.replace(tzinfo=None) for h in hours}
            found = await self.index.keys(
                self.index.camera_keys, lambda k: k.hour.replace(tzinfo=None) in hourset, limit
            )
            if found is None:
                raise self._too_broad("covers")
            hkeys = [(k.camera_id, utc(k.hour)) for k in found]
        by_hour: dict[datetime, list[tuple[Statement, Values]]] = {}
        for c, h in hkeys:
            by_hour.setdefault(h, []).append((self.index.by_camera, {"camera_id": c, "hour": h, **window}))
        return [by_hour[h] for h in sorted(by_hour, reverse=True)]

    async def run_query(self, plan: dict[str, Any], wanted: int = MAX_RESULTS) -> tuple[list[Hit], bool]:
        """The newest hits, at least ``wanted`` of them when there are (at most ``MAX_RESULTS``),
        and whether the query ran to the end (False: it stopped once the page was full)."""
        slices = await self._partitions(plan)
        matches = self._plate_filter(plan)
        cams, area = set(plan["cameras"]), plan["area"]
        hits: dict[str, Hit] = {}
        wanted = min(wanted, MAX_RESULTS)
        i = 0
        while i < len(slices) and len(hits) < wanted:
            batch: list[tuple[Statement, Values]] = []
            while i < len(slices) and (not batch or len(batch) + len(slices[i]) <= _PARALLEL * 4):
                batch.extend(slices[i])
                i += 1
            results = await asyncio.gather(*(self.index.all(stmt, values) for stmt, values in batch))
            found = await asyncio.get_running_loop().run_in_executor(None, _filter_rows, results, matches, cams, area)
            hits.update(found)
        ordered = sorted(hits.values(), key=lambda h: (h.capture_time, h.read_id), reverse=True)
        return ordered[:MAX_RESULTS], i >= len(slices)

    async def Search(self, request: search_pb2.SearchRequest, context: Context) -> search_pb2.SearchResponse:
        p = principal_from()
        actor, role = (p.actor, p.role) if p else ("anonymous", "")
        now = datetime.now(UTC)
        offset, token_fp = 0, ""
        if request.page_token:
            try:
                if len(request.page_token) > 1000:
                    raise ValueError("too long")
                tok = json.loads(base64.urlsafe_b64decode(request.page_token.encode()))
                offset, token_fp = int(tok["o"]), str(tok["f"])
                now = datetime.fromtimestamp(float(tok["n"]), UTC)  # pages share the first page's "now"
                if not 0 <= offset < MAX_RESULTS:
                    raise ValueError("offset")
            except Exception:
                await self._refuse(context, actor, role, request, "page_token is not valid; start again")
        size = min(max(request.page_size or 100, 1), MAX_PAGE_WITH_CROPS if request.include_crops else 1000)
        try:
            plan = self._plan(request, now)
            fingerprint = hashlib.sha256(json.dumps(plan, default=str, sort_keys=True).encode()).hexdigest()[:16]
            if request.page_token and token_fp != fingerprint:
                raise SearchError(
                    grpc.StatusCode.INVALID_ARGUMENT, "page_token does not belong to this query; start again"
                )
            hits, complete = await self.run_query(plan, offset + size + 1)
        except SearchError as e:
            await self._refuse(context, actor, role, request, e.message)
            raise
        page = hits[offset : offset + size]
        nxt = ""
        if offset + size < len(hits):
            nxt = base64.urlsafe_b64encode(
                json.dumps({"o": offset + size, "f": fingerprint, "n": now.timestamp()}).encode()
            ).decode()
        details = {k: v for k, v in plan.items() if k not in ("start", "end")}
        details.update(
            start=plan["start"].isoformat(), end=plan["end"].isoformat(), offset=offset, returned=len(page),
            complete=complete, crops=request.include_crops,
        )  # fmt: skip
        rec = await self.audit.record(
            actor, "search", role=role, purpose=request.purpose.strip(), case_number=request.case_number.strip(),
            details=details, result_count=len(hits),
        )  # fmt: skip
        out = [h.to_proto() for h in page]
        if request.include_crops:
            crops = await self.index.crops([h.read_id for h in page])
            for hit in out:
                hit.plate_crop_jpeg = crops.get(hit.read_id, b"")
        return search_pb2.SearchResponse(hits=out, next_page_token=nxt, audit_ref=f"{rec.chain}/{rec.seq}")

    async def _refuse(
        self, context: Context, actor: str, role: str, request: search_pb2.SearchRequest, message: str
    ) -> None:
        """Audit a refused query (its text fields cut short: a refusal may be for their size) and
        answer INVALID_ARGUMENT with ``message``."""
        await self.audit.record(
            actor, "search", role=role, purpose=request.purpose[:_MAX_PURPOSE],
            case_number=request.case_number[:_MAX_CASE],
            details={"refused": message, "plate": request.plate[:_MAX_RAW_PLATE], "plate_length": len(request.plate),
                     "cameras": len(request.camera_ids)},
            outcome="refused",
        )  # fmt: skip
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
