"""``alpr certs {init,issue}``: the deployment CA and node/service certificates (no hub needed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alpr_common.operator.common import CliError, Context, emit_json, leaf_options


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("certs", help="mutual TLS: create the CA, issue node and service certificates")
    s = p.add_subparsers(dest="action", required=True)
    common = [leaf_options()]
    i = s.add_parser("init", parents=common, help="create ca.crt / ca.key in --dir (once per deployment)")
    i.add_argument("--dir", type=Path, required=True)
    i.add_argument("--name", default="ALPR deployment CA")
    c = s.add_parser("issue", parents=common, help="issue NAME.crt / NAME.key signed by the CA")
    c.add_argument("name", help="node id (the certificate CN) or service name")
    c.add_argument("--kind", choices=["node", "service"], default="node")
    c.add_argument("--ca-dir", type=Path, required=True)
    c.add_argument("--out", type=Path, help="directory (default: the CA directory)")
    c.add_argument("--host", action="append", default=[], help="DNS name or IP for servers (repeatable)")
    c.add_argument("--days", type=int, default=825)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from alpr_common import tls

    try:
        if args.action == "init":
            crt, key = tls.init_ca(args.dir, args.name)
        else:
            crt, key = tls.issue(args.ca_dir, args.name, args.kind, args.out, args.host, args.days)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from e
    if ctx.json:
        emit_json({"cert": str(crt), "key": str(key)})
    else:
        print(f"wrote {crt} and {key} (keep the key private)")
    return 0
