"""``alpr-hub``: run the hub, apply schema migrations, check a config file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from alpr_common.cli_support import add_version, run_cli
from alpr_common.config import ConfigError
from hub.config import load_hub_config

EPILOG = """\
commands:
  serve      run the hub (default): gRPC on :50051, Prometheus metrics on :9101
  migrate    create the keyspace and apply pending CQL migrations, then exit
  add-user   create a user and print a token (bootstraps the first admin: --user ID --role admin)

Settings come from --config (YAML) and ALPR_HUB__SECTION__KEY environment variables,
e.g. ALPR_HUB__CASSANDRA__CONTACT_POINTS=10.0.0.5,10.0.0.6. See ops/config/hub.example.yaml.
"""


def main(argv: list[str] | None = None) -> int:
    return run_cli("alpr-hub", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="alpr-hub",
        description="ALPR hub: stores every read in Cassandra for 60 days and serves the node and operator APIs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "add-user"])
    parser.add_argument("--config", "-c", metavar="FILE", help="hub config file (YAML)")
    parser.add_argument(
        "--validate-config",
        metavar="FILE",
        help="check FILE (plus environment overrides) and exit: 0 if valid",
    )
    parser.add_argument("--user", help="add-user: the user id")
    parser.add_argument(
        "--role",
        default="admin",
        help="add-user: officer, dispatcher, supervisor, investigator, admin, auditor, fleet_operator",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    add_version(parser, "alpr-hub")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.validate_config:
            cfg = load_hub_config(args.validate_config)
            if cfg.security_problems():
                print(f"alpr-hub: {args.validate_config}: " + "; ".join(cfg.security_problems()), file=sys.stderr)
                return 2
            print(f"{args.validate_config}: valid (keyspace {cfg.cassandra.keyspace}, gRPC port {cfg.grpc_port})")
            return 0
        cfg = load_hub_config(args.config)
    except ConfigError as e:
        print(f"alpr-hub: {e}", file=sys.stderr)
        return 2

    if args.command == "add-user":  # bootstrap access (the first admin) without a running hub
        from alpr_common.cassandra import connect as _connect
        from hub.audit import AuditCheckpointer, AuditLog, CheckpointSink, load_audit_key
        from hub.schema import migrate as _migrate
        from hub.users import UserStore

        if not args.user:
            print("alpr-hub: add-user needs --user ID", file=sys.stderr)
            return 2
        cluster, session = _connect(cfg.cassandra)
        try:
            _migrate(session, cfg, echo=lambda _m: None)
            token = UserStore(session=session, cassandra=cfg.cassandra).add_user_sync(
                args.user, args.role, args.user, "alpr-hub"
            )
            key = load_audit_key(cfg.auth.audit_key_file)
            audit = AuditLog(session=session, cassandra=cfg.cassandra, chain=f"cli-{cfg.hub_id}", key=key)
            details = {"user_id": args.user, "role": args.role, "via": "alpr-hub add-user"}

            async def record() -> None:
                await audit.record("alpr-hub", "user.add", details=details)
                if cfg.auth.audit_checkpoint_dir:  # this chain is anchored like the hubs' chains
                    sink = CheckpointSink(cfg.auth.audit_checkpoint_dir, key)
                    await AuditCheckpointer(audit=audit, sink=sink, hub_id=cfg.hub_id, interval_s=1).checkpoint()

            asyncio.run(record())
        except ValueError as e:
            print(f"alpr-hub: {e}", file=sys.stderr)
            return 2
        finally:
            cluster.shutdown()
        print(token)
        return 0

    if args.command == "migrate":
        from alpr_common.cassandra import connect
        from hub.schema import MigrationError, migrate

        try:
            cluster, session = connect(cfg.cassandra)
        except Exception as e:
            print(
                f"alpr-hub: cannot reach Cassandra at {cfg.cassandra.contact_points}:{cfg.cassandra.port}: {e}",
                file=sys.stderr,
            )
            return 1
        try:
            applied = migrate(session, cfg, echo=print)
        except MigrationError as e:
            print(f"alpr-hub: {e}", file=sys.stderr)
            return 1
        finally:
            cluster.shutdown()
        print(f"schema up to date ({len(applied)} migration(s) applied now)")
        return 0

    from hub.server import serve

    if cfg.security_problems():
        print("alpr-hub: " + "; ".join(cfg.security_problems()), file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(cfg))
    except OSError as e:
        print(f"alpr-hub: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # a setting found wrong at start (audit key, insecure config)
        print(f"alpr-hub: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from cassandra.cluster import NoHostAvailable

        if isinstance(e, NoHostAvailable):
            print(
                f"alpr-hub: cannot reach Cassandra at {cfg.cassandra.contact_points}:{cfg.cassandra.port} "
                "(is it running? `ops/local up` starts one)",
                file=sys.stderr,
            )
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
