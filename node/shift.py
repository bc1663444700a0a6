"""A unit's shift and damage state, kept as small JSON files in the node's state directory.

``shift.json``: written by ``alpr-node shift-start`` (on shift, with the hot-list verdict)
and ``alpr-node shift-end`` (off shift). ``damage.json``: an officer's damage report
(policy 4.8), present until the unit is reported repaired. The running node reads both for
its heartbeat: a damage report is a self-check problem (a help-desk ticket), and a mobile
unit off shift is not expected to send heartbeats.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SHIFT_FILE = "shift.json"
DAMAGE_FILE = "damage.json"


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Replace ``path`` atomically (a crash leaves the old or the new record, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def shift_record(state_dir: str | Path) -> dict[str, Any] | None:
    return read_json(Path(state_dir) / SHIFT_FILE)


def on_shift(state_dir: str | Path) -> bool | None:
    """True/False from the last shift-start/shift-end; None when no shift was ever started."""
    rec = shift_record(state_dir)
    return None if rec is None else bool(rec.get("on_shift", True))


def damage_report(state_dir: str | Path) -> dict[str, Any] | None:
    return read_json(Path(state_dir) / DAMAGE_FILE)


def damage_problem(report: dict[str, Any]) -> str:
    """The self-check line of a damage report (the help-desk ticket's text)."""
    return (
        f"damage reported by officer {report.get('officer', '?')} at {report.get('reported_at', '?')}: "
        f"{report.get('note', '')}"
    )
