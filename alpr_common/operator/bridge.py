"""``alpr bridge {dead-letters,retry}``: the dispatch bridge's dead-letter list (via the hub)."""

from __future__ import annotations

import argparse

import grpc
from alpr.v1 import agency_pb2, agency_pb2_grpc

from alpr_common.operator.common import CliError, Context, emit_json, leaf_options, rpc_error, to_dict
from alpr_common.timestamps import from_timestamp


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bridge", help="dispatch bridge: dead letters (relays that could not be delivered)")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]
    d = s.add_parser("dead-letters", parents=common, help="relays and tickets the bridge gave up on")
    d.add_argument("--bridge-id", default="bridge")
    d.add_argument("--hours", type=int, default=24)
    r = s.add_parser("retry", parents=common, help="put dead letters back in the outbox")
    r.add_argument("keys", nargs="*", help="keys to retry (see dead-letters)")
    r.add_argument("--all", action="store_true", help="every dead letter of the last --hours")
    r.add_argument("--sink", default="", help="only this sink")
    r.add_argument("--bridge-id", default="bridge")
    r.add_argument("--hours", type=int, default=24)


def run(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.channel() as ch:
        stub = agency_pb2_grpc.BridgeAdminServiceStub(ch)
        try:
            if args.action == "dead-letters":
                resp = stub.ListDeadLetters(
                    agency_pb2.ListDeadLettersRequest(bridge_id=args.bridge_id, hours=args.hours),
                    timeout=ctx.timeout, metadata=ctx.metadata(),
                )  # fmt: skip
                if ctx.json:
                    emit_json(to_dict(resp))
                else:
                    for x in resp.dead_letters:
                        print(f"{from_timestamp(x.failed_time).isoformat()}  {x.sink:<16} {x.key}  "
                              f"attempts={x.attempts}  {x.last_error}")  # fmt: skip
                    print(f"{len(resp.dead_letters)} dead letter(s)")
                return 0
            if not args.keys and not args.all:
                raise CliError("name the keys to retry, or --all")
            resp2 = stub.RetryDeadLetters(
                agency_pb2.RetryDeadLettersRequest(bridge_id=args.bridge_id, keys=args.keys, sink=args.sink,
                                                   hours=args.hours),
                timeout=ctx.timeout, metadata=ctx.metadata(),
            )  # fmt: skip
            emit_json(to_dict(resp2)) if ctx.json else print(f"{resp2.requeued} dead letter(s) requeued")
            return 0
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e
