"""``alpr-node run`` / ``alpr-node status`` / ``alpr-node --validate-config``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from alpr_common.config import ConfigError
from node.config import load_node_config
from node.fleet_config import ConfigManager

EXAMPLE = "ops/config/node.example.yaml"


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "status":
        return _status(rest)
    parser = argparse.ArgumentParser(
        prog="alpr-node run",
        description="Run the edge node: read plates from the configured cameras and stream them to the hub. "
        "Every read is kept in a local queue until the hub acknowledges it.",
        epilog=f"Settings: --config FILE (see {EXAMPLE}) plus ALPR_NODE__SECTION__KEY environment overrides.",
    )
    parser.add_argument("--config", "-c", metavar="FILE", help="node config (YAML)")
    parser.add_argument("--validate-config", metavar="FILE", help="check FILE and exit (0 if valid)")
    parser.add_argument("--state-dir", help="where the last good configuration is kept, when the config file is broken")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(rest)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.validate_config:
            cfg = load_node_config(args.validate_config)
            cfg.hub.credentials()  # the TLS files must be readable
            if cfg.security_problems():
                print(f"alpr-node: {args.validate_config}: " + "; ".join(cfg.security_problems()), file=sys.stderr)
                return 2
            print(f"{args.validate_config}: valid (node {cfg.node_id}, {cfg.kind}, {len(cfg.cameras)} camera(s))")
            return 0
        if not args.config:
            parser.error(f"--config FILE is required (see {EXAMPLE})")
        cfg = load_node_config(args.config)
        manager = ConfigManager.from_file(args.config, args.state_dir) if cfg.fleet.enabled else None
    except ConfigError as e:
        if args.validate_config or not args.config:
            print(f"alpr-node: {e}", file=sys.stderr)
            return 2
        # A broken file: the last good configuration (file settings + fleet overlay) still runs.
        try:
            manager = ConfigManager.from_file(args.config, args.state_dir)
        except ConfigError:
            print(f"alpr-node: {e}", file=sys.stderr)
            return 2
        cfg = manager.current
        print(f"alpr-node: {e}\nalpr-node: running on the last good configuration", file=sys.stderr)

    from node.runtime import NodeRuntime

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while True:
        try:
            runtime = NodeRuntime(cfg, fleet=manager).start()
        except ConfigError as e:  # e.g. a TLS file that cannot be read
            print(f"alpr-node: {e}", file=sys.stderr)
            return 2
        print(
            f"alpr-node: {cfg.node_id} running; metrics on :{runtime.metrics_port}; status: alpr-node status "
            f"--state-dir {cfg.state_dir}",
            flush=True,
        )
        while not stop.is_set() and not runtime.restart_needed.is_set():
            if runtime.wait_sources_done(0.5):
                print("alpr-node: all camera sources ended; sending what is queued and exiting", flush=True)
                stop.set()
        runtime.stop(drain_s=5.0 if not stop.is_set() else 30.0)
        if stop.is_set() or runtime.restart_config is None:
            return 0
        # A central change that cannot apply in place: the parts restart on it (queued reads stay queued).
        cfg = runtime.restart_config
        print("alpr-node: restarting on the new fleet configuration", flush=True)


def _status(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="alpr-node status",
        description="Show the self-check of the node running with this state directory. "
        "Exit 0 healthy, 1 problems found, 3 node not running.",
    )
    parser.add_argument("--config", "-c", metavar="FILE", help="node config (to find its state_dir)")
    parser.add_argument("--state-dir", help="the node's state_dir (default from --config, else .run/node)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(rest)
    state_dir = args.state_dir
    if state_dir is None:
        try:
            state_dir = load_node_config(args.config).state_dir if args.config else ".run/node"
        except ConfigError as e:
            print(f"alpr-node: {e}", file=sys.stderr)
            return 2
    path = Path(state_dir) / "status.json"
    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError):
        print(
            f"alpr-node status: no status in {path}: is the node running with state_dir {state_dir}?", file=sys.stderr
        )
        return 3
    age = time.time() - st.get("time", 0)
    running = age < 10
    if args.json:
        print(json.dumps({**st, "status_age_s": round(age, 1), "running": running}))
    else:
        print(
            f"node {st['node_id']} ({st['kind']}): {'running' if running else f'NOT RUNNING (last status {age:.0f} s ago)'}"
        )
        hub = st["hub"]
        print(
            f"  hub: {'connected to ' + hub['connected'] if hub['connected'] else 'DISCONNECTED'}"
            + (f" (last error: {hub['last_error']})" if hub.get("last_error") else "")
        )
        q = st["queue"]
        print(f"  queue: {q['depth']} read(s) waiting, oldest {q['oldest_age_s']} s")
        for cam, c in st["cameras"].items():
            print(
                f"  camera {cam}: last frame {c['last_frame_age_s']} s ago"
                + (f", error: {c['error']}" if c["error"] else "")
            )
        print(f"  detector: {'ok' if st['detector_ok'] else 'FAILING'}; reads emitted: {st['reads_emitted']}")
        print("  self-check: " + ("ok" if st["ok"] else "PROBLEMS:\n    - " + "\n    - ".join(st["problems"])))
    if not running:
        return 3
    return 0 if st["ok"] else 1
