"""``alpr agencies {add,list,approve,audit,shared}``: the agency exchange (policy 3.4-3.6, 4.7)."""

from __future__ import annotations

import argparse
from datetime import datetime, time

import grpc
from alpr.v1 import agency_pb2, agency_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

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
from alpr_common.timestamps import from_timestamp, to_timestamp

ROLES = ("deputy-chief-of-investigations", "designee")
SCOPES = ("alerts", "reads")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agencies", help="neighbouring agencies: register, approve out-of-state sharing, audit")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]
    a = s.add_parser("add", parents=common, help="register a law-enforcement agency")
    a.add_argument("agency_id", help="short id, e.g. will-county-so")
    a.add_argument("--name", required=True)
    a.add_argument("--state", required=True, help="jurisdiction, two letters (IL)")
    a.add_argument("--endpoint", required=True, help="HOST:PORT of the agency's hub")
    a.add_argument("--tls-identity", default="", help="expected mTLS certificate identity (CN / SAN)")
    a.add_argument("--ori", default="", help="NCIC ORI")
    a.add_argument("--not-law-enforcement", action="store_true", help="register, but never share with it")
    a.add_argument("--by", default="", help=f"who registers it: {ACTING_AS_HELP}")
    a.add_argument("--replace", action="store_true", help="update an agency already registered")
    s.add_parser("list", parents=common, help="registered agencies with their active approvals")
    ap = s.add_parser("approve", parents=common, help="approve sharing with an out-of-state agency (policy 4.7)")
    ap.add_argument("agency_id")
    ap.add_argument("--approver", default="", help=f"who approves: {ACTING_AS_HELP}")
    ap.add_argument("--role", choices=ROLES, required=True)
    ap.add_argument("--designated-by", default="", help="for a designee: who designated them")
    ap.add_argument("--scope", action="append", choices=SCOPES, default=[], help="repeatable (default: alerts)")
    ap.add_argument("--expires", required=True, help="YYYY-MM-DD or ISO time (UTC)")
    ap.add_argument("--note", default="")
    au = s.add_parser("audit", parents=common, help="sharing decisions (allowed and refused), newest first")
    au.add_argument("--agency", default="")
    au.add_argument("--hours", type=int, default=24)
    sh = s.add_parser("shared", parents=common, help="relays received from other agencies")
    sh.add_argument("--from", dest="origin", default="")
    sh.add_argument("--hours", type=int, default=24)


def _expiry(raw: str) -> Timestamp:
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError as e:
        raise CliError(f"--expires {raw!r}: use YYYY-MM-DD or an ISO time") from e
    if len(raw) == 10:
        dt = datetime.combine(dt.date(), time(23, 59, 59))
    return to_timestamp(dt)


def _agency_line(a: agency_pb2.Agency) -> str:
    appr = ", ".join(f"approved by {x.approver_id} until {from_timestamp(x.expires_time).date()}" for x in a.approvals)
    le = "" if a.law_enforcement else " NOT-LAW-ENFORCEMENT"
    return f"{a.agency_id:<20} {a.state}  {a.name}  {a.endpoint}  tls={a.tls_identity or '-'}{le} {appr}".rstrip()


def run(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.channel() as ch:
        stub = agency_pb2_grpc.AgencyExchangeServiceStub(ch)
        try:
            return _dispatch(ctx, args, stub)
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e


def _dispatch(ctx: Context, args: argparse.Namespace, stub: agency_pb2_grpc.AgencyExchangeServiceStub) -> int:
    md, t = ctx.metadata(), ctx.timeout
    if args.action == "add":
        resp = stub.RegisterAgency(
            agency_pb2.RegisterAgencyRequest(
                agency=agency_pb2.Agency(
                    agency_id=args.agency_id, name=args.name, state=args.state, endpoint=args.endpoint,
                    tls_identity=args.tls_identity, ori=args.ori, law_enforcement=not args.not_law_enforcement,
                    registered_by=acting_as(ctx, args.by, "--by"),
                ),
                replace=args.replace,
            ),
            timeout=t, metadata=md,
        )  # fmt: skip
        emit_json(to_dict(resp.agency)) if ctx.json else print("registered " + _agency_line(resp.agency))
        return 0
    if args.action == "list":
        lst = stub.ListAgencies(agency_pb2.ListAgenciesRequest(), timeout=t, metadata=md)
        if ctx.json:
            emit_json(to_dict(lst))
        else:
            for a in lst.agencies:
                print(_agency_line(a))
            print(f"{len(lst.agencies)} agenc{'y' if len(lst.agencies) == 1 else 'ies'}")
        return 0
    if args.action == "approve":
        scopes = [agency_pb2.ShareScope.Value("SHARE_SCOPE_" + enum_arg(s)) for s in (args.scope or ["alerts"])]
        appr = stub.ApproveAgency(
            agency_pb2.ApproveAgencyRequest(
                agency_id=args.agency_id, approver_id=acting_as(ctx, args.approver, "--approver"),
                approver_role=agency_pb2.ApproverRole.Value("APPROVER_ROLE_" + enum_arg(args.role)),
                designated_by=args.designated_by, expires_time=_expiry(args.expires), note=args.note,
                scopes=scopes,
            ),
            timeout=t, metadata=md,
        )  # fmt: skip
        ap = appr.approval
        if ctx.json:
            emit_json(to_dict(ap))
        else:
            print(f"approval {ap.approval_id}: {ap.agency_id} by {ap.approver_id} until "
                  f"{from_timestamp(ap.expires_time).isoformat()}")  # fmt: skip
        return 0
    if args.action == "audit":
        aud = stub.ListShareAudit(
            agency_pb2.ListShareAuditRequest(hours=args.hours, agency_id=args.agency), timeout=t, metadata=md
        )
        if ctx.json:
            emit_json(to_dict(aud))
        else:
            for e in aud.entries:
                print(f"{from_timestamp(e.time).isoformat()}  {'ALLOWED' if e.allowed else 'REFUSED'}  "
                      f"{e.agency_id}  {e.subject}  by {e.requested_by}: {e.detail}")  # fmt: skip
            print(f"{len(aud.entries)} decision(s)")
        return 0
    resp2 = stub.ListSharedAlerts(
        agency_pb2.ListSharedAlertsRequest(hours=args.hours, origin_agency_id=args.origin), timeout=t, metadata=md
    )
    if ctx.json:
        out = to_dict(resp2)
        for a in out.get("alerts", []):
            a.get("relay", {}).pop("crop_jpeg", None)
        emit_json(out)
    else:
        for s in resp2.alerts:
            r = s.relay
            print(f"{from_timestamp(s.received_time).isoformat()}  from {r.origin_agency_id}  "
                  f"{agency_pb2.RelayReason.Name(r.reason).removeprefix('RELAY_REASON_').lower()}  "
                  f"{r.plate}/{r.state}  cam={r.camera_id}  key={r.idempotency_key}")  # fmt: skip
        print(f"{len(resp2.alerts)} shared alert(s)")
    return 0
