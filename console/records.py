"""Search with export to an evidence package, the audit view and the bridge's dead letters."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from alpr.v1 import agency_pb2, alert_pb2, audit_pb2, evidence_pb2, search_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alpr_common.operator.evidence import write_package
from console.hubclient import HubFailure
from console.sessions import Session
from console.web import Console, page

MODES = {
    "exact": search_pb2.PLATE_MATCH_MODE_EXACT,
    "partial": search_pb2.PLATE_MATCH_MODE_PARTIAL,
    "fuzzy": search_pb2.PLATE_MATCH_MODE_FUZZY,
}
LOCAL_MINUTES = "%Y-%m-%dT%H:%M"  # <input type=datetime-local>, read as UTC


def console_of(request: Request) -> Console:
    c: Console = request.app.state.console
    return c


def _ts(value: str, field: str) -> Timestamp:
    try:
        t = datetime.strptime(value.strip(), LOCAL_MINUTES).replace(tzinfo=UTC)
    except ValueError as e:
        raise ValueError(f"{field}: give a date and time (UTC), e.g. 2026-12-01T08:00") from e
    ts = Timestamp()
    ts.FromDatetime(t)
    return ts


def search_request(form: FormData | dict[str, Any]) -> search_pb2.SearchRequest:
    """The hub's request from the form; missing purpose or case number go to the hub as they are
    (the hub refuses them and says why)."""
    f = {k: str(v) for k, v in form.items()}
    req = search_pb2.SearchRequest(
        purpose=f.get("purpose", "").strip(),
        case_number=f.get("case_number", "").strip(),
        plate=f.get("plate", "").strip(),
        mode=MODES.get(f.get("mode", "exact"), search_pb2.PLATE_MATCH_MODE_EXACT),
        camera_ids=[c.strip() for c in f.get("cameras", "").split(",") if c.strip()],
        page_size=50,
        page_token=f.get("page_token", ""),
        include_crops=True,
    )
    req.start_time.CopyFrom(_ts(f.get("start", ""), "from"))
    req.end_time.CopyFrom(_ts(f.get("end", ""), "to"))
    if f.get("area", "").strip():
        try:
            a, b, c, d = (float(x) for x in f["area"].split(","))
        except ValueError as e:
            raise ValueError("area needs MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (four numbers)") from e
        req.area.CopyFrom(alert_pb2.GeoBox(min_latitude=a, min_longitude=b, max_latitude=c, max_longitude=d))
    return req


@page(console_of)
async def search(request: Request, s: Session) -> Response:
    c = console_of(request)
    now = datetime.now(UTC)
    form: dict[str, Any] = {
        "start": (now - timedelta(days=1)).strftime(LOCAL_MINUTES),
        # the form has minutes: "to" is the end of this minute, so a read of the last seconds is in
        "end": (now + timedelta(minutes=1)).strftime(LOCAL_MINUTES),
        "mode": "exact",
    }
    if request.method == "GET":
        return c.render(request, "search.html", form=form, hits=None)
    posted = await request.form()
    form.update({k: str(v) for k, v in posted.items() if k != "csrf"})
    try:
        req = search_request(posted)
    except ValueError as e:
        return c.render(request, "search.html", status=400, form=form, hits=None, problem=str(e))
    try:
        resp = await c.hub.search.Search(req, metadata=c.md(s), timeout=c.settings.rpc_timeout_s)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return c.render(request, "search.html", status=400, form=form, hits=None, problem=e.details() or "")
        raise
    for h in resp.hits:
        if h.plate_crop_jpeg:
            c.search_crops.put(s.sid, h.read_id, h.plate_crop_jpeg, b"")
    return c.render(
        request,
        "search.html",
        form=form,
        hits=list(resp.hits),
        next_token=resp.next_page_token,
        audit_ref=resp.audit_ref,
    )


@page(console_of)
async def search_crop(request: Request, s: Session) -> Response:
    """A search result's plate crop (JPEG), held from that search for this session only."""
    c = console_of(request)
    read_id = request.path_params["read_id"]
    held = c.search_crops.get(s.sid, read_id)
    if held is None or not held.crop:
        return Response(
            f"no crop held for read {read_id}: run the search again", status_code=404, media_type="text/plain"
        )
    return Response(held.crop, media_type="image/jpeg")


@page(console_of)
async def export(request: Request, s: Session) -> Response:
    """Selected reads into evidence for the case, downloaded as a zip that ``alpr export verify`` accepts
    once unpacked."""
    c = console_of(request)
    form = await request.form()
    case, purpose = str(form.get("case_number", "")).strip(), str(form.get("purpose", "")).strip()
    ids = [str(x) for x in form.getlist("read_id")]
    if not ids:
        return c.error(request, HubFailure(400, "INVALID_ARGUMENT", "select at least one read to export"))
    resp = await c.hub.evidence.ExportEvidence(
        evidence_pb2.ExportEvidenceRequest(case_number=case, purpose=purpose, read_ids=ids),
        metadata=c.md(s),
        timeout=60,
    )
    with tempfile.TemporaryDirectory(prefix="alpr-console-export-") as tmp:
        out = Path(tmp) / "package"
        write_package(out, resp, case, purpose, c.settings.hub)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(out.rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(out).as_posix())
    safe_case = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in case)[:60] or "case"
    return Response(
        buf.getvalue(),
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="evidence-{safe_case}.zip"'},
    )


@page(console_of)
async def audit(request: Request, s: Session) -> Response:
    c = console_of(request)
    q = request.query_params
    try:
        after = int(q.get("after", "0") or 0)
    except ValueError:
        after = 0
    req = audit_pb2.ListAuditRequest(chain=q.get("chain", ""), action=q.get("action", ""), after_seq=after, limit=100)
    resp = await c.hub.audit.ListAudit(req, metadata=c.md(s), timeout=c.settings.rpc_timeout_s)
    report = None
    if request.method == "POST":
        report = await c.hub.audit.VerifyAudit(audit_pb2.VerifyAuditRequest(), metadata=c.md(s), timeout=120)
    return c.render(
        request, "audit.html", entries=list(resp.entries), next_after=resp.next_after_seq, q=q, report=report
    )


@page(console_of)
async def dead_letters(request: Request, s: Session) -> Response:
    c = console_of(request)
    src = await request.form() if request.method == "POST" else request.query_params
    bridge = str(src.get("bridge", "")).strip()
    try:
        hours = max(1, min(1440, int(str(src.get("hours", "24")) or 24)))
    except ValueError:
        hours = 24
    requeued = None
    if request.method == "POST":
        keys = [str(k) for k in (src.getlist("key") if isinstance(src, FormData) else [])]
        if not keys and src.get("all") != "1":
            return c.error(
                request, HubFailure(400, "INVALID_ARGUMENT", "select the dead letters to retry, or retry all")
            )
        r = await c.hub.bridge.RetryDeadLetters(
            agency_pb2.RetryDeadLettersRequest(bridge_id=bridge, keys=keys, hours=hours), metadata=c.md(s), timeout=c.settings.rpc_timeout_s
        )  # fmt: skip
        requeued = r.requeued
    resp = await c.hub.bridge.ListDeadLetters(
        agency_pb2.ListDeadLettersRequest(bridge_id=bridge, hours=hours), metadata=c.md(s), timeout=c.settings.rpc_timeout_s
    )  # fmt: skip
    return c.render(
        request, "deadletters.html", letters=list(resp.dead_letters), bridge=bridge, hours=hours, requeued=requeued
    )


ROUTES = [
    Route("/search", search, methods=["GET", "POST"]),
    Route("/search/crops/{read_id}.jpg", search_crop),
    Route("/export", export, methods=["POST"]),
    Route("/audit", audit, methods=["GET", "POST"]),
    Route("/deadletters", dead_letters, methods=["GET", "POST"]),
]
