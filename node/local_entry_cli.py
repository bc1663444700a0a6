"""``alpr-node hotlist-add``: an officer enters a plate at the unit (policy §2, 4.5: "into the
ALPR fixed or mobile system"), with a reason and an expiry, also while the unit has no link.

The entry is matched at once by the running node (its hot-list copy and outbox, the same
SQLite file) and handed to the hub when a hub answers: there it becomes the MANUAL entry
``MANUAL:<id>``, entered by this officer at this unit, and comes back to every node with the
hub's versions.

    alpr-node hotlist-add ABC1234 --state IL --category stolen_vehicle \\
        --reason "BOLO from dispatch, armed robbery" --expires 2026-12-31 --officer 4711 --config node.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta

from alpr.v1 import hotlist_pb2

from alpr_common.config import ConfigError
from alpr_common.hotlist_model import CATEGORIES, HotListEntry, category_value
from alpr_common.operator.common import enum_arg
from alpr_common.plates import normalize_plate, plate_problem
from alpr_common.timestamps import to_timestamp
from node.hotlist_sync import LocalHotList
from node.shift_cli import officer_arg, unit_options, unit_settings

# The hub's default hotlists.manual_max_expiry_days: a later expiry would be refused there.
MAX_EXPIRY_DAYS = 365
# The hub's default ingest.plate_max_length.
PLATE_MAX_LENGTH = 8


def _expiry(text: str, now: datetime) -> datetime:
    """A date means the end of that day (UTC); refused when past or too far ahead."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"--expires {text!r} is not an ISO date (YYYY-MM-DD) or date-time") from e
    if len(text.strip()) == 10:
        when = when.replace(hour=23, minute=59, second=59)
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise ValueError(f"--expires {text} is past")
    if when > now + timedelta(days=MAX_EXPIRY_DAYS):
        raise ValueError(f"--expires {text} is more than {MAX_EXPIRY_DAYS} days ahead: renew the entry later")
    return when


def main(argv: list[str]) -> int:
    prog = "alpr-node hotlist-add"
    p = argparse.ArgumentParser(prog=prog, description="Enter a plate on this unit's hot list (policy 4.5): "
                                "matched at once, handed to the hub when it can be (offline too).")  # fmt: skip
    p.add_argument("plate")
    p.add_argument("--state", default="", help="state of issuance, e.g. IL (empty: any state)")
    p.add_argument("--category", required=True, help="one of: " + ", ".join(c.lower() for c in CATEGORIES))
    p.add_argument("--reason", required=True, help="why the plate is entered (policy 4.5)")
    p.add_argument("--expires", required=True, help="until when the plate is wanted: ISO date or date-time")
    unit_options(p)
    args = p.parse_args(argv[1:] if argv[:1] == ["hotlist-add"] else argv)
    officer = officer_arg(prog, args.officer)
    if officer is None:
        return 2
    now = datetime.now(UTC)
    plate, state = normalize_plate(args.plate), args.state.strip().upper()
    problems = [plate_problem(plate, 1, PLATE_MAX_LENGTH) or ""]
    if enum_arg(args.category) not in CATEGORIES:
        problems.append(f"unknown category {args.category!r}; one of {', '.join(c.lower() for c in CATEGORIES)}")
    if state and not (len(state) == 2 and state.isalpha()):
        problems.append(f"--state {args.state!r} is not a 2-letter state code")
    if not args.reason.strip():
        problems.append("--reason must say why the plate is entered (policy 4.5)")
    try:
        expires = _expiry(args.expires, now)
    except ValueError as e:
        problems.append(str(e))
    if any(problems):
        for problem in filter(None, problems):
            print(f"{prog}: {problem.replace('plate_text', 'plate')}", file=sys.stderr)
        return 2
    try:
        unit = unit_settings(args, [], None)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    local_id = str(uuid.uuid4())
    category = enum_arg(args.category)
    entry = HotListEntry(entry_id=f"MANUAL:{local_id}", plate=plate, state=state, category=category, source="MANUAL",
                         priority=5, reason=args.reason.strip(), entered_by=officer, entered_at=now,
                         expires_at=expires, details=f"entered at unit {unit.node_id}")  # fmt: skip
    submission = hotlist_pb2.LocalEntry(local_id=local_id, plate=plate, state=state, reason=entry.reason,
                                        category=category_value(category),  # type: ignore[arg-type]
                                        officer_id=officer, entered_time=to_timestamp(now),
                                        expire_time=to_timestamp(expires))  # fmt: skip
    local = LocalHotList(unit.hotlist_path)
    try:
        local.add_local(entry, submission)
        waiting = len(local.outbox())
    finally:
        local.close()
    if args.json:
        print(json.dumps({"entry_id": entry.entry_id, "plate": plate, "state": state, "officer": officer,
                          "expires": expires.isoformat(), "waiting_for_hub": waiting}))  # fmt: skip
    else:
        print(f"{plate}/{state or '*'} is on this unit's hot list until {expires:%Y-%m-%d %H:%M} UTC "
              f"({entry.entry_id}, entered by officer {officer}); it goes to the hub when the unit is "
              f"connected ({waiting} waiting)")  # fmt: skip
    return 0
