"""``alpr-node shift-start --officer ID --hub HOST:PORT [--state-dir DIR]``.

Policy 4.1: the hot list must be current at the start of every shift. The command brings
the node's local copy up to date from the hub and reports READY (exit 0) only when the
node holds the hub's current version; otherwise NOT READY (exit 1) with the reason and
what the node holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from alpr_common.retry import Backoff
from node.hotlist_sync import HotListSync, SyncStatus


def _age(when: datetime | None) -> str:
    if when is None:
        return "never confirmed current"
    s = (datetime.now(UTC) - when).total_seconds()
    return f"last confirmed current {s / 3600:.1f} h ago ({when.isoformat(timespec='seconds')})"


def main(argv: list[str]) -> int:
    args_in = argv[1:] if argv and argv[0] == "shift-start" else argv
    p = argparse.ArgumentParser(prog="alpr-node shift-start", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--officer", required=True, help="officer starting the shift")
    p.add_argument("--hub", action="append", default=[], help="hub HOST:PORT (repeatable; env ALPR_HUB)")
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("ALPR_NODE_STATE_DIR", "/var/lib/alpr-node")))
    p.add_argument("--node-id", default=os.environ.get("ALPR_NODE_ID", socket.gethostname()))
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the list (default 120)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(args_in)
    hubs = args.hub or ([os.environ["ALPR_HUB"]] if os.environ.get("ALPR_HUB") else [])
    if not hubs:
        print("alpr-node shift-start: --hub HOST:PORT is required (or ALPR_HUB)", file=sys.stderr)
        return 2
    if not args.officer.strip():
        print("alpr-node shift-start: --officer must not be empty", file=sys.stderr)
        return 2
    logging.getLogger("node.hotlist_sync").setLevel(logging.ERROR)  # the verdict says it all
    sync = HotListSync(args.state_dir / "hotlist.sqlite", hubs, args.node_id, backoff=Backoff(0.2, 2.0))
    status = sync.sync_once(args.timeout)
    sync.local.close()
    ready, reason = _verdict(status, hubs)
    record = {
        "ready": ready,
        "officer": args.officer,
        "node_id": args.node_id,
        "version": status.version,
        "hub_version": status.hub_version,
        "entries": status.entries,
        "synced_at": status.synced_at.isoformat() if status.synced_at else None,
        "reason": reason,
        "checked_at": datetime.now(UTC).isoformat(),
    }
    if ready:
        (args.state_dir / "shift.json").write_text(json.dumps(record, indent=2))
    if args.json:
        print(json.dumps(record))
    elif ready:
        print(
            f"READY: officer {args.officer} on node {args.node_id}: hot list version {status.version} "
            f"({status.entries} entries) is current"
        )
    else:
        print(f"NOT READY: {reason}", file=sys.stderr)
    return 0 if ready else 1


def _verdict(s: SyncStatus, hubs: list[str]) -> tuple[bool, str]:
    held = f"the node holds hot-list version {s.version} ({s.entries} entries), {_age(s.synced_at)}"
    if s.current:
        return True, ""
    if s.hub_version is None:
        return False, (
            f"cannot reach the hub ({s.last_error or 'no answer from ' + ', '.join(hubs)}); {held}. "
            "Check the unit's network and retry; do not rely on the list until it is current (policy 4.1)"
        )
    return False, (
        f"the hub is at version {s.hub_version} but the update did not finish in time; {held}. "
        "Retry shift-start (a large list can take a few minutes on a slow link)"
    )
