"""The live hit queue (server-sent events fed by AlertService.Watch) and the hit review."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import grpc
from alpr.v1 import alert_pb2, hotlist_pb2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from alpr_common.hotlist_model import CATEGORIES
from console.hubclient import HubFailure
from console.sessions import Session
from console.web import Console, page

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # end of a stream (missing from the stubs)
ACTIONS = {
    "taking_action": alert_pb2.ENFORCEMENT_ACTION_TAKING_ACTION,
    "action_taken": alert_pb2.ENFORCEMENT_ACTION_ACTION_TAKEN,
    "unable_to_act": alert_pb2.ENFORCEMENT_ACTION_UNABLE_TO_ACT,
}
LEADS = {"done": alert_pb2.LEADS_CHECK_DONE, "not_possible": alert_pb2.LEADS_CHECK_NOT_POSSIBLE}
REASONS = {
    "misread": alert_pb2.REJECT_REASON_MISREAD,
    "state_mismatch": alert_pb2.REJECT_REASON_STATE_MISMATCH,
    "entry_no_longer_valid": alert_pb2.REJECT_REASON_ENTRY_NO_LONGER_VALID,
    "duplicate": alert_pb2.REJECT_REASON_DUPLICATE,
    "other": alert_pb2.REJECT_REASON_OTHER,
}


def console_of(request: Request) -> Console:
    c: Console = request.app.state.console
    return c


@dataclass
class QueueFilter:
    categories: list[str]
    cameras: list[str]
    area: str

    @classmethod
    def of(cls, request: Request) -> QueueFilter:
        q = request.query_params
        cats = [c.strip().upper().replace(" ", "_") for v in q.getlist("category") for c in v.split(",") if c.strip()]
        cams = [c.strip() for v in q.getlist("camera") for c in v.split(",") if c.strip()]
        return cls(cats, cams, q.get("area", "").strip())

    def proto(self) -> alert_pb2.AlertFilter:
        """The hub's filter; a bad value raises ValueError with what to fix."""
        f = alert_pb2.AlertFilter(camera_ids=self.cameras)
        for c in self.categories:
            if c not in CATEGORIES:
                raise ValueError(f"unknown category {c.lower()!r}")
            f.categories.append(hotlist_pb2.HotListCategory.Value("HOT_LIST_CATEGORY_" + c))
        if self.area:
            try:
                a, b, c2, d = (float(x) for x in self.area.split(","))
            except ValueError as e:
                raise ValueError("area needs MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (four numbers)") from e
            f.area.CopyFrom(alert_pb2.GeoBox(min_latitude=a, min_longitude=b, max_latitude=c2, max_longitude=d))
        return f

    def query(self) -> str:
        from urllib.parse import urlencode

        pairs = [("category", c.lower()) for c in self.categories] + [("camera", c) for c in self.cameras]
        if self.area:
            pairs.append(("area", self.area))
        return urlencode(pairs)


def priority(a: alert_pb2.Alert) -> int:
    return min((m.entry.priority for m in a.matches if m.entry.priority), default=9)


def sort_key(a: alert_pb2.Alert) -> str:
    """Pending first, then the highest priority (1), then the newest: a string the page sorts by."""
    created_ms = a.created_time.seconds * 1000 + a.created_time.nanos // 1_000_000
    pending = a.status == alert_pb2.ALERT_STATUS_PENDING
    return f"{0 if pending else 1}{priority(a)}{9_999_999_999_999 - created_ms:013d}"


def row_context(a: alert_pb2.Alert) -> dict[str, Any]:
    created_ms = a.created_time.seconds * 1000 + a.created_time.nanos // 1_000_000
    return {
        "a": a,
        "priority": priority(a),
        "sort": sort_key(a),
        "created_ms": created_ms,
        "pending": a.status == alert_pb2.ALERT_STATUS_PENDING,
        "categories": [hotlist_pb2.HotListCategory.Name(c) for c in a.categories],
        "exact": bool(a.matches) and a.matches[0].kind == alert_pb2.MATCH_KIND_EXACT,
        "status": alert_pb2.AlertStatus.Name(a.status),
    }


@page(console_of)
async def queue(request: Request, s: Session) -> Response:
    c = console_of(request)
    qf = QueueFilter.of(request)
    try:
        f = qf.proto()
    except ValueError as e:
        return c.error(request, HubFailure(400, "INVALID_ARGUMENT", str(e)))
    resp = await c.hub.alerts.ListAlerts(
        alert_pb2.ListAlertsRequest(filter=f, hours=24, limit=200), metadata=c.md(s), timeout=c.settings.rpc_timeout_s
    )
    rows = sorted((row_context(a) for a in resp.alerts), key=lambda r: r["sort"])
    return c.render(
        request,
        "queue.html",
        rows=rows,
        qf=qf,
        categories=CATEGORIES,
        events_url="/queue/events" + (f"?{qf.query()}" if qf.query() else ""),
        unattended_ms=int(resp.unattended_after_s * 1000),  # the hub's threshold, the one there is
    )


def sse(event: str, data: dict[str, Any], event_id: str = "") -> bytes:
    out = f"event: {event}\n"
    if event_id:
        out += f"id: {event_id}\n"
    return (out + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


async def queue_events(request: Request) -> Response:
    """Server-sent events: every new hit and status change, resumed from Last-Event-ID."""
    c = console_of(request)
    s = c.session(request)
    if s is None:
        return Response("signed out: sign in again", status_code=401, media_type="text/plain")
    try:
        f = QueueFilter.of(request).proto()
    except ValueError as e:
        return Response(str(e), status_code=400, media_type="text/plain")
    after = request.headers.get("last-event-id", "") or request.query_params.get("after", "")
    return StreamingResponse(
        _stream(c, request, s, f, after),
        media_type="text/event-stream",
        headers={"x-accel-buffering": "no"},
    )


async def _stream(
    c: Console, request: Request, s: Session, f: alert_pb2.AlertFilter, after: str
) -> AsyncIterator[bytes]:
    tmpl = c.templates.get_template("_alert_row.html")

    def payload(a: alert_pb2.Alert, kind: str) -> dict[str, Any]:
        ctx = row_context(a)
        return {
            "alert_id": a.alert_id, "kind": kind, "pending": ctx["pending"], "sort": ctx["sort"],
            "age_ms": int(time.time() * 1000) - ctx["created_ms"], "html": tmpl.render(**ctx),
        }  # fmt: skip

    call = c.hub.alerts.Watch(alert_pb2.WatchRequest(filter=f, after_event_id=after), metadata=c.md(s))
    try:
        yield b"retry: 1000\n\n"
        try:
            await call.initial_metadata()  # the hub has registered this watcher: nothing is missed from here
            if not after:
                # What happened before the stream started (between the page's list and now):
                # the page replaces rows it already has.
                recent = await c.hub.alerts.ListAlerts(
                    alert_pb2.ListAlertsRequest(filter=f, hours=1, limit=100), metadata=c.md(s), timeout=c.settings.rpc_timeout_s
                )  # fmt: skip
                for a in reversed(recent.alerts):
                    yield sse("alert", payload(a, "snapshot"))
            read = asyncio.ensure_future(call.read())
            while True:
                done, _ = await asyncio.wait({read}, timeout=KEEPALIVE_S)
                if not done:
                    if c.sessions.get(request.cookies.get("alpr_console")) is None:
                        yield sse("signedout", {})
                        return
                    yield b": keepalive\n\n"
                    continue
                got = read.result()
                if got is _EOF:
                    return
                ev = cast(alert_pb2.WatchResponse, got)
                kind = "created" if ev.kind == alert_pb2.ALERT_EVENT_KIND_CREATED else "changed"
                yield sse("alert", payload(ev.alert, kind), ev.event_id)
                read = asyncio.ensure_future(call.read())
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                yield sse("reload", {"why": e.details() or ""})  # too old to resume: the page reloads
            elif e.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                yield sse(
                    "signedout" if e.code() == grpc.StatusCode.UNAUTHENTICATED else "denied", {"why": e.details() or ""}
                )
            else:
                log.info("alert watch for %s ended: %s %s", s.user_id, e.code().name, e.details())
            # Otherwise the stream ends and the browser reconnects with Last-Event-ID.
    finally:
        call.cancel()


@page(console_of)
async def review(request: Request, s: Session) -> Response:
    return await _review(request, s)


async def _review(request: Request, s: Session, problem: str = "", status: int = 200) -> Response:
    c = console_of(request)
    alert_id = request.path_params["alert_id"]
    t0 = time.perf_counter()
    got = await c.hub.alerts.GetAlert(
        alert_pb2.GetAlertRequest(alert_id=alert_id), metadata=c.md(s), timeout=c.settings.rpc_timeout_s
    )
    t1 = time.perf_counter()
    a = got.alert
    # The images go by URL, fetched by the browser in parallel from what this call brought.
    c.images.put(s.sid, a.alert_id, got.plate_crop_jpeg, got.frame_jpeg)
    # float32 on the wire: 0.9 arrives as 0.8999999761.
    confs = a.char_confidences
    chars = [(ch, round(confs[i], 4) if i < len(confs) else None) for i, ch in enumerate(a.plate)]
    box = a.plate_box if a.HasField("plate_box") and a.frame_width and a.frame_height else None
    resp = c.render(
        request,
        "review.html",
        status=status,
        a=a,
        row=row_context(a),
        chars=chars,
        box=box,
        crop=f"/alerts/{a.alert_id}/crop.jpg" if got.plate_crop_jpeg else "",
        frame=f"/alerts/{a.alert_id}/frame.jpg" if got.frame_jpeg else "",
        history=list(got.history),
        problem=problem,
        done=request.query_params.get("done", ""),
        reasons=REASONS,
        form=dict(await request.form()) if request.method == "POST" else {},
    )
    # Where the page's time went, for the browser's navigation timing (and the benchmark).
    resp.headers["server-timing"] = (
        f"hub;dur={(t1 - t0) * 1000:.1f}, render;dur={(time.perf_counter() - t1) * 1000:.1f}"
    )
    return resp


@page(console_of)
async def image(request: Request, s: Session) -> Response:
    """A hit's crop or frame (JPEG): held from the review page's call, else asked of the hub."""
    c = console_of(request)
    alert_id, which = request.path_params["alert_id"], request.path_params["which"]
    if which not in ("crop", "frame"):
        return Response("no such image: crop.jpg or frame.jpg", status_code=404, media_type="text/plain")
    held = c.images.get(s.sid, alert_id)
    if held is None:
        got = await c.hub.alerts.GetAlert(
            alert_pb2.GetAlertRequest(alert_id=alert_id), metadata=c.md(s), timeout=c.settings.rpc_timeout_s
        )
        held = c.images.put(s.sid, alert_id, got.plate_crop_jpeg, got.frame_jpeg)
    jpeg = held.crop if which == "crop" else held.frame
    if not jpeg:
        return Response(f"alert {alert_id} has no {which} image", status_code=404, media_type="text/plain")
    return Response(jpeg, media_type="image/jpeg")


@page(console_of)
async def decide(request: Request, s: Session) -> Response:
    c = console_of(request)
    alert_id = request.path_params["alert_id"]
    form = await request.form()

    def flag(name: str) -> bool:
        return form.get(name) in ("on", "1", "true")

    req = alert_pb2.DecideAlertRequest(
        alert_id=alert_id,
        officer_id=s.user_id,  # the signed-in person decides, never a typed name
        note=str(form.get("note", "")).strip(),
        amend=flag("amend"),
    )
    if form.get("decision") == "accept":
        req.accept.CopyFrom(
            alert_pb2.Acceptance(
                characters_verified=flag("characters_verified"),
                state_verified=flag("state_verified"),
                leads_check=LEADS.get(str(form.get("leads", "")), alert_pb2.LEADS_CHECK_UNSPECIFIED),
                action=ACTIONS.get(str(form.get("action", "")), alert_pb2.ENFORCEMENT_ACTION_UNSPECIFIED),
                on_other_assignment=flag("on_other_assignment"),
                supervisor_notified=flag("supervisor_notified"),
            )
        )
    elif form.get("decision") == "reject":
        req.reject.CopyFrom(
            alert_pb2.Rejection(reason=REASONS.get(str(form.get("reason", "")), alert_pb2.REJECT_REASON_UNSPECIFIED))
        )
    # Anything incomplete goes to the hub as it is: the hub's rules (policy 4.2-4.6) decide,
    # and its message is shown next to the form.
    try:
        resp = await c.hub.alerts.DecideAlert(req, metadata=c.md(s), timeout=c.settings.rpc_timeout_s)
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            return await _review(
                request,
                s,
                problem=e.details() or e.code().name,
                status=400 if e.code() == grpc.StatusCode.INVALID_ARGUMENT else 409,
            )
        raise
    done = alert_pb2.AlertStatus.Name(resp.alert.status).removeprefix("ALERT_STATUS_").lower()
    log.info("alert %s %s by %s", alert_id, done, s.user_id)
    return RedirectResponse(f"/alerts/{alert_id}?done={done}", status_code=303)


ROUTES = [
    Route("/queue", queue),
    Route("/queue/events", queue_events),
    Route("/alerts/{alert_id}", review),
    Route("/alerts/{alert_id}/{which:str}.jpg", image),
    Route("/alerts/{alert_id}/decide", decide, methods=["POST"]),
]
