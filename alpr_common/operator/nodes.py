"""``alpr nodes {register,revoke,list}`` (the node registry, admin), ``alpr nodes status``
(each node's latest heartbeat: fleet operators, supervisors, admins) and ``alpr nodes
report-damage`` (an officer's report on a unit, policy 4.8)."""

from __future__ import annotations

import argparse

import grpc
from alpr.v1 import admin_pb2, admin_pb2_grpc, fleet_pb2, fleet_pb2_grpc, ingest_pb2, reads_pb2

from alpr_common.operator.common import (
    ACTING_AS_HELP,
    CliError,
    Context,
    acting_as,
    emit_json,
    leaf_options,
    output,
    rpc_error,
    to_dict,
)
from alpr_common.timestamps import from_timestamp, now_utc


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("nodes", help="edge nodes: status of the fleet; register with cameras, revoke, list (admin)")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]
    st = s.add_parser(
        "status",
        parents=common,
        help="each node's latest heartbeat: problems, cameras, hot list, queue, disk, clock",
    )
    st.add_argument("--problems", action="store_true", help="only nodes that report a problem")
    st.add_argument("--node", default="", help="only this node id")
    dm = s.add_parser("report-damage", parents=common,
                      help="report a unit damaged or not working (policy 4.8): a help-desk ticket until --repaired")  # fmt: skip
    dm.add_argument("node_id")
    what = dm.add_mutually_exclusive_group(required=True)
    what.add_argument("--note", help="what is wrong (e.g. 'front camera hit, lens cracked')")
    what.add_argument("--repaired", action="store_true", help="withdraw the report: the unit is fixed")
    dm.add_argument("--officer", default="", help=f"who reports: {ACTING_AS_HELP}")
    g = s.add_parser("register", parents=common, help="allow a node (certificate CN) and its cameras")
    g.add_argument("node_id")
    g.add_argument("--camera", action="append", default=[], required=True, help="camera id (repeatable)")
    r = s.add_parser("revoke", parents=common, help="refuse the node's streams from now on")
    r.add_argument("node_id")
    r.add_argument("--reason", default="")
    s.add_parser("list", parents=common, help="registered nodes")


def run(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.channel() as ch:
        try:
            if args.action == "status":
                return _status(ctx, args, fleet_pb2_grpc.FleetServiceStub(ch))
            if args.action == "report-damage":
                return _report_damage(ctx, args, fleet_pb2_grpc.FleetServiceStub(ch))
            return _registry(ctx, args, admin_pb2_grpc.AdminServiceStub(ch))
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e


def _registry(ctx: Context, args: argparse.Namespace, stub: admin_pb2_grpc.AdminServiceStub) -> int:
    md, t = ctx.metadata(), ctx.timeout
    if args.action == "register":
        r = stub.RegisterNode(
            admin_pb2.RegisterNodeRequest(node_id=args.node_id, camera_ids=args.camera), timeout=t, metadata=md
        )
        return output(ctx, r, f"node {args.node_id}: cameras {', '.join(r.node.camera_ids)}")
    if args.action == "revoke":
        r2 = stub.RevokeNode(
            admin_pb2.RevokeNodeRequest(node_id=args.node_id, reason=args.reason), timeout=t, metadata=md
        )
        return output(ctx, r2, f"node {args.node_id}: revoked")
    if args.action == "list":
        r3 = stub.ListNodes(admin_pb2.ListNodesRequest(), timeout=t, metadata=md)
        lines = [f"{n.node_id:20} {'REVOKED' if n.revoked else 'active':8} {','.join(n.camera_ids)}" for n in r3.nodes]
        return output(ctx, r3, "\n".join([*lines, f"{len(r3.nodes)} node(s)"]))
    raise CliError(f"unknown action {args.action}")


def _report_damage(ctx: Context, args: argparse.Namespace, stub: fleet_pb2_grpc.FleetServiceStub) -> int:
    if args.note is not None and not args.note.strip():
        raise CliError("--note must say what is wrong")
    req = fleet_pb2.ReportDamageRequest(node_id=args.node_id, note=(args.note or "").strip(), repaired=args.repaired,
                                        reported_by=acting_as(ctx, args.officer, "--officer"))  # fmt: skip
    r = stub.ReportDamage(req, timeout=ctx.timeout, metadata=ctx.metadata())
    done = "damage report withdrawn" if args.repaired else "damage reported: the help desk gets a ticket"
    return output(ctx, r, f"{args.node_id}: {done}\n{_describe(r.node)}")


def _status(ctx: Context, args: argparse.Namespace, stub: fleet_pb2_grpc.FleetServiceStub) -> int:
    nodes: list[fleet_pb2.NodeStatus] = []
    token = ""
    while True:
        req = fleet_pb2.FleetServiceListNodesRequest(
            problems_only=args.problems, node_id=args.node, page_size=1000, page_token=token
        )
        resp = stub.ListNodes(req, timeout=ctx.timeout, metadata=ctx.metadata())
        nodes.extend(resp.nodes)
        token = resp.next_page_token
        if not token:
            break
    if ctx.json:
        emit_json([to_dict(n) for n in nodes])
        return 0
    if args.node and not nodes:
        raise CliError(f"no heartbeat from node {args.node!r} has reached the hubs")
    for n in nodes:
        print(_describe(n))
    print(f"{len(nodes)} node(s)" + (" with problems" if args.problems else ""))
    return 0


def _describe(n: fleet_pb2.NodeStatus) -> str:
    now = now_utc()
    kind = reads_pb2.NodeKind.Name(n.node_kind).removeprefix("NODE_KIND_").lower()
    seen = "never"
    if n.HasField("last_heartbeat_time"):
        seen = f"{(now - from_timestamp(n.last_heartbeat_time)).total_seconds():.0f} s ago via {n.hub_id}"
    synced = "never"
    if n.HasField("hotlist_synced_time"):
        synced = from_timestamp(n.hotlist_synced_time).isoformat(timespec="seconds")
    skew = f"{n.clock_skew_s:+.1f} s" if n.HasField("clock_skew_s") else "unknown"
    cams = ", ".join(f"{c.camera_id} {'ok' if c.ok else 'DOWN: ' + c.problem}" for c in n.cameras) or "none"
    shift = ingest_pb2.ShiftState.Name(n.shift_state).removeprefix("SHIFT_STATE_").lower().replace("_", " ")
    where = "position unknown"
    if n.HasField("last_position"):
        p = n.last_position
        where = f"at {p.latitude:.5f},{p.longitude:.5f}"
        if n.HasField("last_position_time"):
            where += f" ({(now - from_timestamp(n.last_position_time)).total_seconds():.0f} s ago)"
    lag = f" ({n.hotlist_lag_versions} behind)" if n.hotlist_lag_versions else ""
    lines = [
        f"{n.node_id} ({kind}, {n.software_version or 'version ?'}): heartbeat {seen}"
        + ("" if shift == "unspecified" else f"; {shift}"),
        f"  {where}; cameras: {cams}; detector {'ok' if n.detector_ok else 'NOT WORKING'}",
        f"  hot list v{n.hotlist_version}{lag}, confirmed current {synced}; clock skew {skew}",
        f"  queue {n.queue_depth} read(s), oldest {n.queue_oldest_age_s:.0f} s; disk free {n.disk_free_bytes / 2**30:.1f} GiB",
    ]
    lines += [f"  PROBLEM: {p}" for p in n.problems]
    if n.HasField("damage"):
        d = n.damage
        when = from_timestamp(d.reported_time).isoformat(timespec="seconds") if d.HasField("reported_time") else "?"
        lines.append(f"  DAMAGE reported by officer {d.reported_by} at {when}: {d.note}")
    return "\n".join(lines)
