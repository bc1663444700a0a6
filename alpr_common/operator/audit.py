"""``alpr audit {list,verify}`` (auditor, admin)."""

from __future__ import annotations

import argparse

import grpc
from alpr.v1 import audit_pb2, audit_pb2_grpc

from alpr_common.operator.common import Context, emit_json, leaf_options, rpc_error, to_dict


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("audit", help="the audit log: list entries, verify the hash chains")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]
    ls = s.add_parser("list", parents=common, help="entries, oldest first")
    ls.add_argument("--chain", default="", help="one chain (hub id); default: all")
    ls.add_argument("--after", type=int, default=0, help="entries after this sequence number")
    ls.add_argument("--action", dest="only", default="", help="only this action (search, evidence.export, ...)")
    ls.add_argument("--limit", type=int, default=100)
    s.add_parser("verify", parents=common, help="recompute every chain; exit 1 if anything was changed")


def run(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.channel() as ch:
        stub = audit_pb2_grpc.AuditServiceStub(ch)
        md, t = ctx.metadata(), ctx.timeout
        try:
            if args.action == "verify":
                v = stub.VerifyAudit(audit_pb2.VerifyAuditRequest(), timeout=t, metadata=md)
                if ctx.json:
                    emit_json(to_dict(v) | {"ok": v.ok})
                else:
                    for c in v.chains:
                        print(f"chain {c.chain}: {c.entries} entries, {'intact' if c.ok else 'TAMPERED'}")
                        for prob in c.problems:
                            print(f"  {prob}")
                    print("audit log intact" if v.ok else "audit log has been TAMPERED WITH")
                return 0 if v.ok else 1
            resp = stub.ListAudit(
                audit_pb2.ListAuditRequest(chain=args.chain, after_seq=args.after, limit=args.limit, action=args.only),
                timeout=t,
                metadata=md,
            )
            if ctx.json:
                emit_json(to_dict(resp))
            else:
                for e in resp.entries:
                    print(
                        f"{e.chain}/{e.seq} {e.time.ToDatetime():%Y-%m-%d %H:%M:%S} {e.actor} ({e.role}) "
                        f"{e.action} {e.outcome} case={e.case_number!r} purpose={e.purpose!r} "
                        f"results={e.result_count} {e.details_json}"
                    )
                print(f"{len(resp.entries)} entr{'y' if len(resp.entries) == 1 else 'ies'}")
            return 0
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e
