"""``alpr users {add,revoke,list,whoami,set-password}`` (admin)."""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

import grpc
from alpr.v1 import admin_pb2, admin_pb2_grpc

from alpr_common.operator.common import CliError, Context, emit_json, leaf_options, output, rpc_error, to_dict

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
    pw = s.add_parser(
        "set-password",
        parents=common,
        help="let a user sign in to the web console with a password (where a token cannot be pasted)",
        description="Gives USER a password for the web console's sign-in (the hub stores an scrypt hash; "
        "at least 10 characters). Without an option the password is asked for twice (or read from "
        "standard input when it is not a terminal); it is never taken from the command line.",
    )
    pw.add_argument("user_id")
    how = pw.add_mutually_exclusive_group()
    how.add_argument(
        "--generate", action="store_true", help="make a random password easy to type on a touch screen; printed once"
    )
    how.add_argument("--clear", action="store_true", help="remove the user's password (tokens only from now on)")


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
            if args.action == "set-password":
                return _set_password(ctx, args, stub)
            if args.action == "whoami":
                me = stub.WhoAmI(admin_pb2.WhoAmIRequest(), timeout=t, metadata=md)
                return output(ctx, me, f"{me.user.user_id} ({_role(me.user.role)})")
            resp3 = stub.ListUsers(admin_pb2.ListUsersRequest(), timeout=t, metadata=md)
            lines = [
                f"{u.user_id:20} {_role(u.role):13} {'REVOKED' if u.revoked else 'active':7}"
                f"{' password' if u.has_password else ''}"
                for u in resp3.users
            ]
            return output(ctx, resp3, "\n".join([*lines, f"{len(resp3.users)} user(s)"]))
        except grpc.RpcError as e:
            raise rpc_error(ctx, e) from e


def _role(v: int) -> str:
    return admin_pb2.Role.Name(admin_pb2.Role.ValueType(v)).removeprefix("ROLE_").lower()


def new_password() -> str:
    """A random password easy to type with gloves on a touch screen: three groups of four
    lowercase letters and digits (about 59 bits), e.g. ``k7mq-p2xw-9rtn``."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"  # no i, l, o, 0, 1: not mistaken for each other
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))


def _read_password(user_id: str) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"new password for {user_id}: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the two passwords differ: nothing changed")
    return first


def _set_password(ctx: Context, args: argparse.Namespace, stub: admin_pb2_grpc.AdminServiceStub) -> int:
    password = "" if args.clear else new_password() if args.generate else _read_password(args.user_id)
    resp = stub.SetPassword(
        admin_pb2.SetPasswordRequest(user_id=args.user_id, password=password, clear=args.clear),
        timeout=ctx.timeout,
        metadata=ctx.metadata(),
    )
    if args.clear:
        return output(ctx, resp, f"user {args.user_id}: password removed (sign-in sessions ended)")
    if ctx.json:
        emit_json({**to_dict(resp), **({"password": password} if args.generate else {})})
        return 0
    shown = f" (shown once):\n{password}" if args.generate else ""
    print(f"user {args.user_id}: password set; earlier sign-in sessions ended{shown}")
    return 0
