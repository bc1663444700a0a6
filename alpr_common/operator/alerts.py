"""``alpr alerts {list,show,watch,accept,reject}``."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
from alpr.v1 import alert_pb2, alert_pb2_grpc, hotlist_pb2

from alpr_common.hotlist_model import CATEGORIES, category_name
from alpr_common.location_quality import describe_position
from alpr_common.operator.common import (
    ACTING_AS_HELP,
    CliError,
    Context,
    acting_as,
    emit_json,
    enum_arg,
    leaf_options,
    rpc_error,
    to_dict,
)
from alpr_common.timestamps import from_timestamp

ACTIONS = ("taking-action", "action-taken", "unable-to-act")
LEADS = ("done", "not-possible")
REASONS = ("misread", "state-mismatch", "entry-no-longer-valid", "duplicate", "other")
STATUSES = ("pending", "accepted", "rejected")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="hot-list hits: list, show, watch, accept, reject")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]

    def filters(x: argparse.ArgumentParser) -> None:
        x.add_argument("--category", action="append", default=[], help="repeatable: " + ", ".join(
            c.lower() for c in CATEGORIES))  # fmt: skip
        x.add_argument("--camera", action="append", default=[], help="camera id (repeatable)")
        x.add_argument("--area", help="MIN_LAT,MIN_LON,MAX_LAT,MAX_LON")

    ls = s.add_parser("list", parents=common, help="recent alerts, newest first")
    filters(ls)
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--unattended", action="store_true", help="only pending alerts past the unattended time")
    ls.add_argument("--hours", type=int, default=24)
    ls.add_argument("--limit", type=int, default=100)

    sh = s.add_parser(
        "show", parents=common, help="one alert with its matches and history; writes the crop and frame images"
    )
    sh.add_argument("alert_id")
    sh.add_argument("--images-dir", type=Path, default=Path("."), help="where to write the images (default .)")

    w = s.add_parser("watch", parents=common, help="stream new alerts and status changes")
    filters(w)
    w.add_argument("--after", default="", help="resume after this event id")
    w.add_argument("--count", type=int, default=0, help="exit after this many events (0: run until Ctrl-C)")

    for name in ("accept", "reject"):
        d = s.add_parser(name, parents=common, help=f"{name} a PENDING alert (--amend to change a decision)")
        d.add_argument("alert_id")
        d.add_argument("--officer", default="", help=f"who decides: {ACTING_AS_HELP}")
        d.add_argument("--note", default="")
        d.add_argument("--amend", action="store_true", help="change an earlier decision (note required)")
        if name == "accept":
            d.add_argument("--characters-verified", action="store_true", help="plate characters checked on the image")
            d.add_argument("--state-verified", action="store_true", help="state of issuance checked on the image")
            d.add_argument("--leads", choices=LEADS, required=True, help="LEADS/dispatch status check")
            d.add_argument("--action", dest="enforcement", choices=ACTIONS, required=True)
            d.add_argument("--other-assignment", action="store_true", help="you are on another assignment")
            d.add_argument("--supervisor-notified", action="store_true")
        else:
            d.add_argument("--reason", choices=REASONS, required=True)


def _filter(args: argparse.Namespace) -> alert_pb2.AlertFilter:
    f = alert_pb2.AlertFilter(camera_ids=args.camera)
    for c in args.category:
        if enum_arg(c) not in CATEGORIES:
            raise CliError(f"unknown category {c!r}; one of {', '.join(x.lower() for x in CATEGORIES)}")
        f.categories.append(hotlist_pb2.HotListCategory.Value("HOT_LIST_CATEGORY_" + enum_arg(c)))
    if args.area:
        try:
            a, b, c, d = (float(x) for x in args.area.split(","))
        except ValueError as e:
            raise CliError("--area needs MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (four numbers)") from e
        f.area.CopyFrom(alert_pb2.GeoBox(min_latitude=a, min_longitude=b, max_latitude=c, max_longitude=d))
    return f


def _status(v: int) -> str:
    return alert_pb2.AlertStatus.Name(alert_pb2.AlertStatus.ValueType(v)).removeprefix("ALERT_STATUS_")


def _line(a: alert_pb2.Alert) -> str:
    m = a.matches[0] if a.matches else None
    kind = alert_pb2.MatchKind.Name(m.kind).removeprefix("MATCH_KIND_").lower() if m else "-"
    entry = f"{m.entry.plate}/{m.entry.state or '*'}" if m else "-"
    cats = ",".join(category_name(c).lower() for c in a.categories)
    when = from_timestamp(a.capture_time).strftime("%Y-%m-%d %H:%M:%S")
    flag = " UNATTENDED" if a.unattended else ""
    mism = " STATE-MISMATCH" if m and m.state_mismatch else ""
    return (
        f"{a.alert_id}  {when}  {_status(a.status):<8} {a.plate}/{a.region or '?'} ~ {entry} "
        f"({kind} {m.score if m else 0:.2f}{mism}) {cats} cam={a.camera_id}{flag}"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.channel() as ch:
        stub = alert_pb2_grpc.AlertServiceStub(ch)
        try:
            return _dispatch(ctx, args, stub)
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e


def _dispatch(ctx: Context, args: argparse.Namespace, stub: alert_pb2_grpc.AlertServiceStub) -> int:
    md, t = ctx.metadata(), ctx.timeout
    if args.action == "list":
        req = alert_pb2.ListAlertsRequest(
            filter=_filter(args), unattended_only=args.unattended, hours=args.hours, limit=args.limit
        )
        if args.status:
            req.status = alert_pb2.AlertStatus.Value("ALERT_STATUS_" + args.status.upper())
        resp = stub.ListAlerts(req, timeout=t, metadata=md)
        if ctx.json:
            emit_json(to_dict(resp))
        else:
            for a in resp.alerts:
                print(_line(a))
            print(f"{len(resp.alerts)} alert(s)")
        return 0
    if args.action == "show":
        got = stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=args.alert_id), timeout=t, metadata=md)
        images = {}
        args.images_dir.mkdir(parents=True, exist_ok=True)
        for name, data in (("crop", got.plate_crop_jpeg), ("frame", got.frame_jpeg)):
            if data:
                path = args.images_dir / f"alert-{got.alert.alert_id}-{name}.jpg"
                path.write_bytes(data)
                images[name] = str(path)
        if ctx.json:
            emit_json({"alert": to_dict(got.alert), "history": [to_dict(h) for h in got.history], "images": images})
            return 0
        a = got.alert
        print(_line(a))
        where = describe_position(a.location.latitude, a.location.longitude, a.location_quality, a.location_age_s)
        print(f"  read {a.read_id} node {a.node_id} camera {a.camera_id} at {where}; "
              f"read confidence {a.read_confidence:.2f}")  # fmt: skip
        for m in a.matches:
            e = m.entry
            veh = " ".join(x for x in (e.vehicle.year, e.vehicle.make, e.vehicle.model, e.vehicle.color) if x)
            print(
                f"  match {alert_pb2.MatchKind.Name(m.kind).removeprefix('MATCH_KIND_').lower()} score {m.score:.2f}"
                f"{' STATE MISMATCH' if m.state_mismatch else ''}: {e.plate}/{e.state or '*'} "
                f"{category_name(e.category).lower()} ({e.entry_id}) {veh} {e.reason} {e.details}"
            )
        for h in got.history:
            print(f"  {'amended' if h.amendment else 'decided'} {_status(h.status)} by {h.officer_id} at "
                  f"{from_timestamp(h.decided_time).isoformat()} {h.note}")  # fmt: skip
        for name, path in images.items():
            print(f"  {name} image: {path}")
        print("  verify the plate characters and the state on the images before acting (policy 4.2)")
        return 0
    if args.action == "watch":
        n = 0
        call = stub.Watch(alert_pb2.WatchRequest(filter=_filter(args), after_event_id=args.after), metadata=md)
        try:
            for ev in call:
                if ctx.json:
                    emit_json(to_dict(ev))
                else:
                    kind = alert_pb2.AlertEventKind.Name(ev.kind).removeprefix("ALERT_EVENT_KIND_").lower()
                    print(f"[{kind}] {_line(ev.alert)}  event={ev.event_id}", flush=True)
                n += 1
                if args.count and n >= args.count:
                    call.cancel()  # type: ignore[no-untyped-call]
                    break
        except KeyboardInterrupt:
            call.cancel()  # type: ignore[no-untyped-call]
        return 0
    dreq = alert_pb2.DecideAlertRequest(
        alert_id=args.alert_id, officer_id=acting_as(ctx, args.officer, "--officer"), note=args.note, amend=args.amend
    )
    if args.action == "accept":
        dreq.accept.CopyFrom(
            alert_pb2.Acceptance(
                characters_verified=args.characters_verified,
                state_verified=args.state_verified,
                leads_check=alert_pb2.LeadsCheck.Value("LEADS_CHECK_" + enum_arg(args.leads)),
                action=alert_pb2.EnforcementAction.Value("ENFORCEMENT_ACTION_" + enum_arg(args.enforcement)),
                on_other_assignment=args.other_assignment,
                supervisor_notified=args.supervisor_notified,
            )
        )
    else:
        dreq.reject.CopyFrom(
            alert_pb2.Rejection(reason=alert_pb2.RejectReason.Value("REJECT_REASON_" + enum_arg(args.reason)))
        )
    decided = stub.DecideAlert(dreq, timeout=t, metadata=md)
    if ctx.json:
        emit_json(to_dict(decided.alert))
    else:
        print(_line(decided.alert))
    return 0
