"""``alpr users {add,revoke,list,whoami}`` (admin)."""

from __future__ import annotations

import argparse

import grpc
from alpr.v1 import admin_pb2, admin_pb2_grpc

from alpr_common.operator.common import Context, leaf_options, output, rpc_error

ROLES = ("officer", "dispatcher", "supervisor", "investigator", "admin", "auditor", "fleet_operator")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("users", help="users, roles and tokens (admin): add, revoke, list, whoami")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]
    a = s.add_parser("add", parents=common, help="create a user (or a new token for one); prints the token once")
    a.add_argument("user_id")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--name", default="", help="display name")
    r = s.add_parser("revoke", parents=common, help="revoke every token of a user")
    r.add_argument("user_id")
    r.add_argument("--reason", default="")
    s.add_parser("list", parents=common, help="all users")
    s.add_parser("whoami", parents=common, help="the user of --token")


def run(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.channel() as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        md, t = ctx.metadata(), ctx.timeout
        try:
            if args.action == "add":
                role = admin_pb2.Role.Value("ROLE_" + args.role.upper())
                resp = stub.AddUser(
                    admin_pb2.AddUserRequest(user_id=args.user_id, role=role, display_name=args.name),
                    timeout=t,
                    metadata=md,
                )
                return output(ctx, resp, f"user {args.user_id} ({args.role}) token (shown once):\n{resp.token}")
            if args.action == "revoke":
                resp2 = stub.RevokeUser(
                    admin_pb2.RevokeUserRequest(user_id=args.user_id, reason=args.reason), timeout=t, metadata=md
                )
                return output(ctx, resp2, f"user {args.user_id}: every token revoked")
            if args.action == "whoami":
                me = stub.WhoAmI(admin_pb2.WhoAmIRequest(), timeout=t, metadata=md)
                return output(ctx, me, f"{me.user.user_id} ({_role(me.user.role)})")
            resp3 = stub.ListUsers(admin_pb2.ListUsersRequest(), timeout=t, metadata=md)
            lines = [f"{u.user_id:20} {_role(u.role):13} {'REVOKED' if u.revoked else 'active'}" for u in resp3.users]
            return output(ctx, resp3, "\n".join([*lines, f"{len(resp3.users)} user(s)"]))
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e


def _role(v: int) -> str:
    return admin_pb2.Role.Name(admin_pb2.Role.ValueType(v)).removeprefix("ROLE_").lower()
