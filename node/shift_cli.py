"""The officer's commands on a unit: ``shift-start``, ``shift-end`` and ``report-damage``.

``alpr-node shift-start --officer ID --config FILE`` (policy 4.1): the hot list must be
current at the start of every shift. The command brings the node's local copy up to date
from the hub and reports READY (exit 0) only when the node holds the hub's current version;
otherwise NOT READY (exit 1) with the reason and what the node holds. With ``--config`` (the
same file as ``alpr-node run``) it uses the node's hubs, node id, state directory and
mutual-TLS certificate; ``--hub``, ``--node-id`` and ``--state-dir`` override it.

``alpr-node shift-end --officer ID``: the unit goes off shift (a parked patrol car is not
expected to send heartbeats, so it raises no "no heartbeat" ticket).

``alpr-node report-damage --officer ID --note TEXT`` (policy 4.8): the unit reports the
damage as a self-check problem with its next heartbeat, which opens a help-desk ticket;
``--repaired`` withdraws the report once the unit is fixed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc

from alpr_common.config import ConfigError
from alpr_common.retry import Backoff
from node.hotlist_sync import HotListSync, SyncStatus
from node.shift import DAMAGE_FILE, SHIFT_FILE, damage_report, read_json, write_json

DEFAULT_STATE_DIR = "/var/lib/alpr-node"


@dataclass
class UnitSettings:
    """What the commands need from the node's config (or from the flags)."""

    hubs: list[str]
    node_id: str
    state_dir: Path
    hotlist_path: Path
    credentials: grpc.ChannelCredentials | None


def unit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--officer", required=True, help="the officer (badge or user id)")
    p.add_argument("--config", "-c", metavar="FILE", default=os.environ.get("ALPR_NODE_CONFIG"),
                   help="the node's config, as for `alpr-node run` (env ALPR_NODE_CONFIG)")  # fmt: skip
    p.add_argument(
        "--state-dir", type=Path, help=f"the node's state_dir (default from --config, else {DEFAULT_STATE_DIR})"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def unit_settings(args: argparse.Namespace, hubs_flag: list[str], node_id_flag: str | None) -> UnitSettings:
    """Flags over the config file over the environment; ConfigError when the config is unusable."""
    if args.config:
        from node.config import load_node_config

        cfg = load_node_config(args.config)
        state_dir = args.state_dir or Path(cfg.state_dir)
        hotlist = cfg.hotlist_path() if args.state_dir is None else state_dir / "hotlist.sqlite"
        return UnitSettings(hubs_flag or list(cfg.hub.targets), node_id_flag or cfg.node_id, state_dir, hotlist,
                            cfg.hub.credentials())  # fmt: skip
    state_dir = args.state_dir or Path(os.environ.get("ALPR_NODE_STATE_DIR", DEFAULT_STATE_DIR))
    hubs = hubs_flag or ([os.environ["ALPR_HUB"]] if os.environ.get("ALPR_HUB") else [])
    node_id = node_id_flag or os.environ.get("ALPR_NODE_ID", socket.gethostname())
    return UnitSettings(hubs, node_id, state_dir, state_dir / "hotlist.sqlite", None)


def _age(when: datetime | None) -> str:
    if when is None:
        return "never confirmed current"
    s = (datetime.now(UTC) - when).total_seconds()
    return f"last confirmed current {s / 3600:.1f} h ago ({when.isoformat(timespec='seconds')})"


def officer_arg(prog: str, officer: str) -> str | None:
    if not officer.strip():
        print(f"{prog}: --officer must not be empty", file=sys.stderr)
        return None
    return officer.strip()


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("shift-start", argv)
    if command == "shift-end":
        return shift_end(rest)
    if command == "report-damage":
        return report_damage(rest)
    return shift_start(rest)


def shift_start(argv: list[str]) -> int:
    prog = "alpr-node shift-start"
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    unit_options(p)
    p.add_argument("--hub", action="append", default=[], help="hub HOST:PORT (repeatable; default from --config, "
                   "else env ALPR_HUB)")  # fmt: skip
    p.add_argument("--node-id", help="default from --config, else env ALPR_NODE_ID or the host name")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the list (default 120)")
    args = p.parse_args(argv)
    officer = officer_arg(prog, args.officer)
    if officer is None:
        return 2
    try:
        unit = unit_settings(args, args.hub, args.node_id)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    if not unit.hubs:
        print(f"{prog}: no hub: give --config FILE (the node's config), --hub HOST:PORT or ALPR_HUB", file=sys.stderr)
        return 2
    logging.getLogger("node.hotlist_sync").setLevel(logging.ERROR)  # the verdict says it all
    sync = HotListSync(unit.hotlist_path, unit.hubs, unit.node_id, backoff=Backoff(0.2, 2.0),
                       credentials=unit.credentials)  # fmt: skip
    status = sync.sync_once(args.timeout)
    sync.local.close()
    ready, reason = _verdict(status, unit.hubs, unit.credentials is not None)
    now = datetime.now(UTC).isoformat()
    record = {
        "ready": ready,
        "on_shift": True,
        "officer": officer,
        "node_id": unit.node_id,
        "version": status.version,
        "hub_version": status.hub_version,
        "entries": status.entries,
        "synced_at": status.synced_at.isoformat() if status.synced_at else None,
        "reason": reason,
        "checked_at": now,
        "started_at": now,
    }
    # On shift either way: a unit whose list is not current is still out on patrol (and must say so).
    write_json(unit.state_dir / SHIFT_FILE, record)
    if args.json:
        print(json.dumps(record))
    elif ready:
        print(
            f"READY: officer {officer} on node {unit.node_id}: hot list version {status.version} "
            f"({status.entries} entries) is current"
        )
    else:
        print(f"NOT READY: {reason}", file=sys.stderr)
    return 0 if ready else 1


def _verdict(s: SyncStatus, hubs: list[str], tls: bool) -> tuple[bool, str]:
    held = f"the node holds hot-list version {s.version} ({s.entries} entries), {_age(s.synced_at)}"
    if s.current:
        return True, ""
    if s.hub_version is None:
        hint = "" if tls else " (a hub with mutual TLS needs --config with the node's certificate)"
        return False, (
            f"cannot reach the hub ({s.last_error or 'no answer from ' + ', '.join(hubs)}){hint}; {held}. "
            "Check the unit's network and retry; do not rely on the list until it is current (policy 4.1)"
        )
    return False, (
        f"the hub is at version {s.hub_version} but the update did not finish in time; {held}. "
        "Retry shift-start (a large list can take a few minutes on a slow link)"
    )


def shift_end(argv: list[str]) -> int:
    prog = "alpr-node shift-end"
    p = argparse.ArgumentParser(prog=prog, description="End the shift on this unit: off shift, a parked unit's "
                                "silence opens no help-desk ticket.")  # fmt: skip
    unit_options(p)
    args = p.parse_args(argv)
    officer = officer_arg(prog, args.officer)
    if officer is None:
        return 2
    try:
        unit = unit_settings(args, [], None)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    path = unit.state_dir / SHIFT_FILE
    record = read_json(path) or {"node_id": unit.node_id}
    record.update({"on_shift": False, "ended_by": officer, "ended_at": datetime.now(UTC).isoformat()})
    write_json(path, record)
    damage = damage_report(unit.state_dir)
    if args.json:
        print(json.dumps({**record, "damage_reported": damage is not None}))
    else:
        print(f"shift ended on node {record.get('node_id', unit.node_id)} by officer {officer}: off shift")
        if damage is not None:
            print(f"  open damage report by officer {damage.get('officer')}: {damage.get('note')}")
    return 0


def report_damage(argv: list[str]) -> int:
    prog = "alpr-node report-damage"
    p = argparse.ArgumentParser(prog=prog, description="Report this unit damaged or not working properly "
                                "(policy 4.8): the next heartbeat carries it and the help desk gets a ticket.")  # fmt: skip
    unit_options(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--note", help="what is wrong (e.g. 'front camera hit, lens cracked')")
    what.add_argument("--repaired", action="store_true", help="withdraw the report: the unit is fixed")
    args = p.parse_args(argv)
    officer = officer_arg(prog, args.officer)
    if officer is None:
        return 2
    if args.note is not None and not args.note.strip():
        print(f"{prog}: --note must say what is wrong", file=sys.stderr)
        return 2
    try:
        unit = unit_settings(args, [], None)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    path = unit.state_dir / DAMAGE_FILE
    if args.repaired:
        existed = path.exists()
        path.unlink(missing_ok=True)
        print(f"damage report on node {unit.node_id} withdrawn by officer {officer}" if existed
              else f"no damage report open on node {unit.node_id}")  # fmt: skip
        return 0
    record = {"officer": officer, "note": args.note.strip(), "node_id": unit.node_id,
              "reported_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    write_json(path, record)
    if args.json:
        print(json.dumps(record))
    else:
        print(f"damage reported on node {unit.node_id} by officer {officer}: it goes to the help desk with the "
              "unit's next heartbeat (alpr-node status shows it)")  # fmt: skip
    return 0
