"""``alpr-bridge``: the dispatch bridge (relays to dispatch and neighbouring agencies, IT tickets)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from alpr_common.cli_support import add_version, run_cli
from alpr_common.config import ConfigError
from dispatch_bridge.config import load_bridge_config

EPILOG = """\
examples:
  alpr-bridge --config ops/config/bridge.example.yaml      # run (metrics on :9103)
  alpr-bridge --validate-config FILE                        # check a config file (exit 0 if valid)

Environment overrides: ALPR_BRIDGE__SECTION__KEY, e.g. ALPR_BRIDGE__HUBS=10.0.0.5:50051.
Dead letters: `alpr bridge dead-letters` (and `alpr bridge retry`) on the operator CLI.
"""


def main(argv: list[str] | None = None) -> int:
    return run_cli("alpr-bridge", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="alpr-bridge",
        description="ALPR dispatch bridge: relays valid, unactioned and unattended hits to dispatch and "
        "neighbouring agencies through a durable outbox; opens help-desk tickets for failing units.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.add_argument("--config", "-c", metavar="FILE", help="bridge config file (YAML)")
    parser.add_argument("--validate-config", metavar="FILE", help="check FILE (plus environment) and exit: 0 if valid")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    add_version(parser, "alpr-bridge")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if args.validate_config:
            cfg = load_bridge_config(args.validate_config)
            if cfg.security_problems():
                print(f"alpr-bridge: {args.validate_config}: " + "; ".join(cfg.security_problems()), file=sys.stderr)
                return 2
            print(
                f"{args.validate_config}: valid (bridge {cfg.bridge_id}, {len(cfg.dispatch)} dispatch sink(s), "
                f"{len(cfg.neighbours)} neighbour(s), tickets {'on' if cfg.tickets.enabled else 'off'})"
            )
            return 0
        cfg = load_bridge_config(args.config)
        from dispatch_bridge.sinks import token_from_env

        token_from_env(cfg.hub_token_env)
        for s in cfg.dispatch + cfg.tickets.sinks:
            if s.kind == "webhook":
                s.signing_secret()
        if cfg.security_problems():
            raise ConfigError("the bridge will not start: " + "; ".join(cfg.security_problems()))
    except (ConfigError, ValueError) as e:
        print(f"alpr-bridge: {e}", file=sys.stderr)
        return 2

    from cassandra.cluster import NoHostAvailable

    from dispatch_bridge.bridge import serve
    from dispatch_bridge.outbox import SchemaMissing

    try:
        asyncio.run(serve(cfg))
    except SchemaMissing as e:
        print(f"alpr-bridge: {e}", file=sys.stderr)
        return 1
    except NoHostAvailable:
        print(
            f"alpr-bridge: cannot reach Cassandra at {cfg.cassandra.contact_points}:{cfg.cassandra.port} "
            "(is it running? `ops/local up` starts one)",
            file=sys.stderr,
        )
        return 1
    except OSError as e:
        print(f"alpr-bridge: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
