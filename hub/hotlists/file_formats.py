"""Hot-list file adapters: Illinois LEADS and Secretary of State fixed-width extracts,
and a generic CSV. Layouts: ``shared/data/hotlists/README.md``.

Each adapter turns a file into entries plus bad rows (1-based line numbers and a message a
person can act on). Blank lines and lines made only of commas are empty records, skipped.

Generic CSV: a header row naming the columns, in any order. Required: ``plate``,
``state``, ``category`` (a category name, e.g. ``parking_scofflaw``). Optional:
``source`` (must equal the import's source when given), ``reason``, ``entered_by``,
``expires_at`` (ISO date or date-time, UTC when no zone), ``priority`` (1-9),
``source_record_id``, ``year``, ``make``, ``model``, ``style``, ``color``,
``vehicle_type``, ``details``. Unknown columns are an error (a typo must not drop data).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from alpr_common.hotlist_model import CATEGORIES, DEFAULT_PRIORITY, SOURCES, HotListEntry, make_entry_id
from alpr_common.plates import normalize_plate, plate_problem
from alpr_common.timestamps import utc

FORMATS = ("IL_LEADS", "IL_SOS", "CSV")
_STATE = re.compile(r"^[A-Z]{2}$")
CSV_REQUIRED = ("plate", "state", "category")
CSV_OPTIONAL = (
    "source", "reason", "entered_by", "expires_at", "priority", "source_record_id", "year", "make",
    "model", "style", "color", "vehicle_type", "details",
)  # fmt: skip


@dataclass(frozen=True)
class BadRow:
    line: int
    message: str


@dataclass
class ParsedFile:
    entries: list[HotListEntry]
    bad_rows: list[BadRow]
    rows: int  # non-empty records seen
    # Why the file as a whole cannot be imported (e.g. cut off mid-record); empty when it can.
    problem: str = ""


class _Bad(Exception):
    pass


def _plate(raw: str) -> str:
    plate = normalize_plate(raw)
    problem = plate_problem(plate, 1, 8)
    if problem:
        raise _Bad(problem.replace("plate_text", "plate"))
    return plate


def _state(raw: str) -> str:
    st = raw.strip().upper()
    if not _STATE.match(st):
        raise _Bad(f"state of issuance {raw!r} is not a 2-letter code")
    return st


def _field(line: str, tag: str, start: int, end: int | None) -> str:
    """A tagged fixed-width field, e.g. ``VYR/`` at 19 with the value at 23-25."""
    if line[start : start + len(tag)] != tag:
        return ""
    return line[start + len(tag) : end].strip()


def _leads(line: str, source: str, by: str, now: datetime) -> HotListEntry:
    if len(line) < 19:
        raise _Bad(f"record is {len(line)} characters long; a LEADS record has at least 19 (plate, state, type, code)")
    plate = _plate(line[0:8])
    state = _state(line[8:10])
    vtype = line[10:12].strip()
    code = line[12:19].strip()
    if code == "STOLEN":
        record = _field(line, "LDS/", 73, 85)
        if not record:
            raise _Bad("STOLEN record has no LEADS record number (LDS/ at columns 73-85); the line may be truncated")
        return HotListEntry(
            entry_id=make_entry_id(source, state, plate, record), plate=plate, state=state,
            category="STOLEN_VEHICLE", source=source, reason="LEADS: stolen vehicle", entered_by=by,
            entered_at=now, source_record_id=record, year=_field(line, "VYR/", 19, 25),
            make=_field(line, "VMA/", 26, 35), model=_field(line, "VMO/", 35, 43),
            style=_field(line, "VST/", 43, 50), color=_field(line, "VCO/", 50, 62), vehicle_type=vtype,
            details=f"date of theft {_field(line, 'DOT/', 62, 73)}".strip(),
        )  # fmt: skip
    if code in ("WANTED", "MISSING"):
        record = _field(line, "LDS/", 77, None)
        if not record:
            raise _Bad(f"{code} record has no LEADS record number (LDS/ at column 78); the line may be truncated")
        category = "WANTED_PERSON" if code == "WANTED" else "MISSING_PERSON"
        return HotListEntry(
            entry_id=make_entry_id(source, state, plate, record), plate=plate, state=state, category=category,
            source=source, reason=f"LEADS: {code.lower()} person", entered_by=by, entered_at=now,
            source_record_id=record, vehicle_type=vtype, details=line[19:77].strip(),
        )  # fmt: skip
    raise _Bad(f"unknown parse code {code!r} at columns 13-19; expected STOLEN, WANTED or MISSING")


def _sos(line: str, source: str, by: str, now: datetime) -> HotListEntry:
    if len(line) < 21:
        raise _Bad(f"record is {len(line)} characters long; a SOS record has at least 21 (plate, state, type, code)")
    plate = _plate(line[0:9])
    state = _state(line[9:11])
    code = line[13:21].strip()
    cats = {"SUSPEND": "REGISTRATION_SUSPENDED", "REVOKED": "REGISTRATION_REVOKED"}
    if code not in cats:
        raise _Bad(f"unknown parse code {code!r} at columns 14-21; expected SUSPEND or REVOKED")
    rest = line[21:]
    order = re.search(r"DOT/(\d{6})", rest)
    exp = re.search(r"EXP/(\d{4})", rest)
    details = " ".join(
        x
        for x in (f"order date {order.group(1)}" if order else "", f"plate expires {exp.group(1)}" if exp else "")
        if x
    )
    return HotListEntry(
        entry_id=make_entry_id(source, state, plate, cats[code]), plate=plate, state=state, category=cats[code],
        source=source, reason=f"Secretary of State: registration {code.lower()}", entered_by=by, entered_at=now,
        vehicle_type=line[11:13].strip(), details=details,
    )  # fmt: skip


def _when(raw: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as e:
        raise _Bad(f"expires_at {raw!r} is not an ISO date (YYYY-MM-DD) or date-time") from e
    return utc(dt)


def _csv_row(row: dict[str, str], source: str, by: str, now: datetime) -> HotListEntry:
    plate = _plate(row.get("plate", ""))
    state = _state(row.get("state", ""))
    cat = row.get("category", "").strip().upper()
    if cat not in CATEGORIES:
        raise _Bad(f"unknown category {row.get('category')!r}; one of {', '.join(c.lower() for c in CATEGORIES)}")
    src = (row.get("source") or "").strip().upper()
    if src == "STATE":
        src = "STATE_SOS"
    if src and src != source:
        raise _Bad(f"row source {row.get('source')!r} differs from the import's source {source.lower()!r}")
    prio_raw = (row.get("priority") or "").strip()
    try:
        priority = int(prio_raw) if prio_raw else DEFAULT_PRIORITY
    except ValueError as e:
        raise _Bad(f"priority {prio_raw!r} is not a number 1-9") from e
    if not 1 <= priority <= 9:
        raise _Bad(f"priority {priority} is outside 1-9")
    record = (row.get("source_record_id") or "").strip()

    def g(k: str) -> str:
        return (row.get(k) or "").strip()

    return HotListEntry(
        entry_id=make_entry_id(source, state, plate, record or cat), plate=plate, state=state, category=cat,
        source=source, priority=priority, reason=g("reason"), entered_by=g("entered_by") or by, entered_at=now,
        expires_at=_when(g("expires_at")), source_record_id=record, year=g("year"), make=g("make"),
        model=g("model"), style=g("style"), color=g("color"), vehicle_type=g("vehicle_type"), details=g("details"),
    )  # fmt: skip


def parse_file(fmt: str, data: bytes, source: str, imported_by: str, now: datetime | None = None) -> ParsedFile:
    """Parse a whole extract. ``fmt`` is one of FORMATS, ``source`` one of SOURCES."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}; one of {', '.join(FORMATS)}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    now = now or datetime.now(UTC)
    text = data.decode("utf-8", errors="replace")
    out = ParsedFile([], [], 0)
    seen: dict[str, int] = {}

    def keep(lineno: int, entry: HotListEntry) -> None:
        first = seen.get(entry.entry_id)
        if first is not None:
            out.bad_rows.append(BadRow(lineno, f"duplicate of line {first} (same plate, state and record)"))
            return
        seen[entry.entry_id] = lineno
        out.entries.append(entry)

    if fmt == "CSV":
        lines = text.splitlines()
        if not lines:
            return out
        header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
        missing = [c for c in CSV_REQUIRED if c not in header]
        unknown = [c for c in header if c not in CSV_REQUIRED + CSV_OPTIONAL]
        if missing or unknown:
            msg = "CSV header: " + "; ".join(
                x
                for x in (
                    f"missing column(s) {', '.join(missing)}" if missing else "",
                    f"unknown column(s) {', '.join(unknown)}" if unknown else "",
                )
                if x
            )
            out.bad_rows.append(BadRow(1, msg + f" (expected {', '.join(CSV_REQUIRED + CSV_OPTIONAL)})"))
            return out
        for lineno, values in enumerate(csv.reader(lines[1:]), start=2):
            if not any(v.strip() for v in values):
                continue
            out.rows += 1
            if len(values) != len(header):
                out.bad_rows.append(BadRow(lineno, f"{len(values)} fields; the header has {len(header)}"))
                continue
            try:
                keep(lineno, _csv_row(dict(zip(header, values, strict=True)), source, imported_by, now))
            except _Bad as e:
                out.bad_rows.append(BadRow(lineno, str(e)))
        return out

    parse = _leads if fmt == "IL_LEADS" else _sos
    if text and not text.endswith(("\n", "\r")):
        # Extracts end every record with a line break (these layouts have no trailer record):
        # a last line without one is a file cut off part-way through a download or copy.
        out.problem = (
            "the file ends in the middle of a record (no line break after the last line): "
            "it looks truncated; fetch it again"
        )
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or not line.replace(",", "").strip():
            continue
        out.rows += 1
        try:
            keep(lineno, parse(line, source, imported_by, now))
        except _Bad as e:
            out.bad_rows.append(BadRow(lineno, str(e)))
    return out
