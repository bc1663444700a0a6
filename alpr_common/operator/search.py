"""``alpr search``: stored reads by plate / time / camera / area; purpose and case required."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

import grpc
from alpr.v1 import alert_pb2, search_pb2, search_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from alpr_common.location_quality import describe_position
from alpr_common.operator.common import CliError, Context, emit_json, leaf_options, rpc_error, to_dict
from alpr_common.timestamps import now_utc, to_timestamp

MODES = {"exact": 1, "partial": 2, "fuzzy": 3}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "search", parents=[leaf_options()], help="search reads (purpose and case number required; audited)"
    )
    p.add_argument("plate", nargs="?", default="", help="plate; with --mode partial: ? and * wildcards")
    p.add_argument("--mode", choices=list(MODES), default="exact")
    p.add_argument("--purpose", required=True, help="why you search (law-enforcement purposes only)")
    p.add_argument("--case", required=True, help="case or incident number")
    p.add_argument("--since", help="ISO time (UTC) or hours back, e.g. 48h; default: the whole retention")
    p.add_argument("--until", help="ISO time (UTC); default: now")
    p.add_argument("--camera", action="append", default=[], help="camera id (repeatable)")
    p.add_argument("--area", help="MIN_LAT,MIN_LON,MAX_LAT,MAX_LON")
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--all-pages", action="store_true", help="fetch every page (each page is audited)")


def _time(text: str) -> Timestamp:
    if text.endswith("h") and text[:-1].isdigit():
        return to_timestamp(now_utc() - timedelta(hours=int(text[:-1])))
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as e:
        raise CliError(f"bad time {text!r}: use ISO 8601 (2026-05-01T12:00) or NNh") from e
    return to_timestamp(dt)


def run(ctx: Context, args: argparse.Namespace) -> int:
    req = search_pb2.SearchRequest(
        purpose=args.purpose,
        case_number=args.case,
        plate=args.plate,
        mode=MODES[args.mode],  # type: ignore[arg-type]
        camera_ids=args.camera,
        page_size=args.page_size,
    )
    if args.since:
        req.start_time.CopyFrom(_time(args.since))
    if args.until:
        req.end_time.CopyFrom(_time(args.until))
    if args.area:
        try:
            a, b, c, d = (float(x) for x in args.area.split(","))
        except ValueError as e:
            raise CliError("--area needs MIN_LAT,MIN_LON,MAX_LAT,MAX_LON (four numbers)") from e
        req.area.CopyFrom(alert_pb2.GeoBox(min_latitude=a, min_longitude=b, max_latitude=c, max_longitude=d))
    hits: list[search_pb2.SearchHit] = []
    refs: list[str] = []
    with ctx.channel() as ch:
        stub = search_pb2_grpc.SearchServiceStub(ch)
        try:
            while True:
                resp = stub.Search(req, timeout=ctx.timeout, metadata=ctx.metadata())
                hits.extend(resp.hits)
                refs.append(resp.audit_ref)
                if not (args.all_pages and resp.next_page_token):
                    break
                req.page_token = resp.next_page_token
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e
    if ctx.json:
        emit_json({"hits": [to_dict(h) for h in hits], "next_page_token": resp.next_page_token, "audit_refs": refs})
    else:
        for h in hits:
            print(
                f"{h.capture_time.ToDatetime():%Y-%m-%d %H:%M:%S} {h.plate:9} {h.region:3} {h.camera_id:16} "
                f"{describe_position(h.latitude, h.longitude, h.location_quality, h.location_age_s)} {h.read_id}"
            )
        more = " (more: --all-pages)" if resp.next_page_token else ""
        print(f"{len(hits)} read(s){more}; audited as {', '.join(refs)}")
    return 0
