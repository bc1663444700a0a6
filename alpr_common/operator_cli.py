"""``alpr``: the operator CLI (hot lists, alerts, agencies, the bridge, users, nodes, audit,
search, evidence export, certificates, fleet configuration and model rollouts).

Global options: ``--hub HOST:PORT`` (env ``ALPR_HUB``), ``--token`` (env ``ALPR_TOKEN``),
``--json``. Exit status 0 on success, 1 on any refusal or failure (with a message saying
why), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys

import alpr_common.operator.audit as audit_cli
import alpr_common.operator.certs as certs_cli
import alpr_common.operator.evidence as export_cli
import alpr_common.operator.fleet as fleet_cli
import alpr_common.operator.nodes as nodes_cli
import alpr_common.operator.search as search_cli
import alpr_common.operator.users as users_cli
from alpr_common.cli_support import add_version, run_cli
from alpr_common.operator import agencies, alerts, bridge, hotlist
from alpr_common.operator.common import CliError, add_global_options, context_from, fail

GROUPS = {"hotlist": hotlist, "alerts": alerts, "agencies": agencies, "bridge": bridge}
GROUPS |= {"users": users_cli, "nodes": nodes_cli, "audit": audit_cli, "search": search_cli}
GROUPS |= {"export": export_cli, "certs": certs_cli, "fleet": fleet_cli}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpr", description="ALPR platform: the operator CLI (hot lists, alerts, search, export, nodes)."
    )
    add_global_options(parser)
    add_version(parser, "alpr")
    sub = parser.add_subparsers(dest="group", required=True)
    for mod in GROUPS.values():
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli("alpr", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(GROUPS[args.group].run(context_from(args), args))
    except CliError as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
