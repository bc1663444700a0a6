"""The shared matcher: exact, look-alike and one-character matches, scoring, state, expiry."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alpr_common.hotlist_model import HotListEntry
from alpr_common.matching import EXACT, EXTRA_CHAR, LOOKALIKE, MISSING_CHAR, Matcher, MatchOptions, canonical
from tests.support import ROOT


def entry(eid: str, plate: str, state: str = "IL", **kw: Any) -> HotListEntry:
    return HotListEntry(eid, plate, state, kw.pop("category", "STOLEN_VEHICLE"), kw.pop("source", "LEADS"), **kw)


ENTRIES = [entry("e1", "ABC1234"), entry("e2", "B0SS12", ""), entry("e3", "XY9"), entry("e4", "GZ1L0D5")]

# read plate, read state -> expected (entry, kind, score, state mismatch) list, best first
TABLE = [
    ("ABC1234", "IL", [("e1", EXACT, 1.0, False)]),
    ("A8C1234", "IL", [("e1", LOOKALIKE, 0.95, False)]),  # B/8
    ("ABC1Z34", "IL", [("e1", LOOKALIKE, 0.95, False)]),  # 2/Z
    ("A8CI234", "IL", [("e1", LOOKALIKE, 0.9, False)]),  # two look-alikes
    ("ABC1234", "WI", [("e1", EXACT, 0.7, True)]),  # state mismatch: lower, still shown
    ("ABC1234", "", [("e1", EXACT, 0.95, False)]),  # no state read
    ("ABC123", "IL", [("e1", MISSING_CHAR, 0.75, False)]),
    ("BC1234", "IL", [("e1", MISSING_CHAR, 0.75, False)]),
    ("ABC12345", "IL", [("e1", EXTRA_CHAR, 0.75, False)]),
    ("AABC1234", "IL", [("e1", EXTRA_CHAR, 0.75, False)]),
    ("A8C123", "IL", [("e1", MISSING_CHAR, 0.7, False)]),  # missing + look-alike
    ("XBC1234", "IL", []),  # X is no look-alike of A
    ("ABD1234", "IL", []),
    ("8OS512", "MI", [("e2", LOOKALIKE, 0.85, False)]),  # entry without state matches any state
    ("BOSS2", "", [("e2", MISSING_CHAR, 0.7, False)]),
    ("XY9", "IL", [("e3", EXACT, 1.0, False)]),
    ("XY", "IL", []),  # short plates: no one-character tolerance
    ("XY99", "IL", []),
    ("6ZIL0D5", "IL", [("e4", LOOKALIKE, 0.9, False)]),
    ("G21LOQS", "IL", [("e4", LOOKALIKE, 0.8, False)]),
]


@pytest.mark.parametrize(("plate", "state", "want"), TABLE)
def test_fuzzy_table(plate: str, state: str, want: list[tuple[str, str, float, bool]]) -> None:
    m = Matcher(entries=ENTRIES)
    got = [(x.entry.entry_id, x.kind, x.score, x.state_mismatch) for x in m.match(plate, state)]
    assert got == want


def test_options_turn_fuzziness_off_and_min_score_filters() -> None:
    strict = Matcher(MatchOptions(lookalike=False, one_char=False), ENTRIES)
    assert [x.kind for x in strict.match("ABC1234", "IL")] == [EXACT]
    assert strict.match("A8C1234", "IL") == [] and strict.match("ABC123", "IL") == []
    picky = Matcher(MatchOptions(min_score=0.8), ENTRIES)
    assert picky.match("ABC1234", "WI") == []  # 0.7 < 0.8
    assert picky.match("ABC1234", "IL")[0].score == 1.0


def test_several_entries_sorted_by_score_then_priority() -> None:
    m = Matcher(entries=[entry("a", "ABC1234", priority=5), entry("b", "A8C1234", priority=1),
                         entry("c", "ABC1234", "WI", priority=1)])  # fmt: skip
    got = [(x.entry.entry_id, x.kind) for x in m.match("ABC1234", "IL")]
    assert got == [("a", EXACT), ("b", LOOKALIKE), ("c", EXACT)]


def test_updates_removals_and_expiry() -> None:
    now = datetime.now(UTC)
    m = Matcher(entries=[entry("a", "ABC1234"), entry("old", "OLD1234", expires_at=now - timedelta(seconds=1))])
    assert m.match("OLD1234", "IL") == []  # expired entries never match
    m.upsert(entry("a", "ZZZ9876"))  # the entry's plate changed
    assert m.match("ABC1234", "IL") == [] and m.match("ZZZ9876", "IL")[0].entry.entry_id == "a"
    m.remove("a")
    assert m.match("ZZZ9876", "IL") == [] and len(m) == 1
    m.remove("missing")  # no error
    assert canonical("O0DQ") == canonical("0000") and canonical("S5") == canonical("55")


def test_matcher_imports_without_the_hub() -> None:
    code = "import sys, alpr_common.matching, alpr_common.hotlist_model; assert not [m for m in sys.modules if m.startswith('hub')]"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def _reference(entries: dict[str, HotListEntry], plate: str, state: str, now: datetime) -> list[tuple[str, str, float]]:
    """The matching rules by brute force over every entry (the index must find exactly these)."""
    opts = MatchOptions()
    c = canonical(plate)
    best: dict[str, tuple[str, float]] = {}
    for e in entries.values():
        if e.expired(now):
            continue
        ec = canonical(e.plate)
        cands: list[tuple[str, float]] = []
        if ec == c:
            d = sum(x != y for x, y in zip(plate, e.plate, strict=True))
            cands.append((EXACT, 1.0) if d == 0 else (LOOKALIKE, 1.0 - 0.05 * d))
        short_ok = len(plate) + 1 == len(e.plate) >= opts.one_char_min_length
        if short_ok:
            ds = [sum(x != y for x, y in zip(plate, e.plate[:j] + e.plate[j + 1 :], strict=True))
                  for j in range(len(e.plate)) if canonical(e.plate[:j] + e.plate[j + 1 :]) == c]  # fmt: skip
            if ds:
                cands.append((MISSING_CHAR, 0.75 - 0.05 * min(ds)))
        if len(plate) - 1 == len(e.plate) >= opts.one_char_min_length:
            ds = [sum(x != y for x, y in zip(plate[:i] + plate[i + 1 :], e.plate, strict=True))
                  for i in range(len(plate)) if canonical(plate[:i] + plate[i + 1 :]) == ec]  # fmt: skip
            if ds:
                cands.append((EXTRA_CHAR, 0.75 - 0.05 * min(ds)))
        for kind, score in cands:
            if e.state and not state:
                score -= 0.05
            elif e.state and state != e.state:
                score -= 0.3
            score = round(max(0.0, score), 4)
            if score >= opts.min_score and (e.entry_id not in best or score > best[e.entry_id][1]):
                best[e.entry_id] = (kind, score)
    return sorted(((k, *v) for k, v in best.items()), key=lambda t: (-t[2], t[0]))


def test_index_finds_what_a_scan_finds_through_upserts_and_removals() -> None:
    """Random plates over a small alphabet (many near-collisions), changed and removed as a list is."""
    rnd = random.Random(11)
    alphabet = "AB8O0DSZ2X"
    now = datetime.now(UTC)
    m = Matcher()
    held: dict[str, HotListEntry] = {}

    def plate() -> str:
        return "".join(rnd.choices(alphabet, k=rnd.choice((3, 4, 5, 5, 6, 6, 7))))

    for step in range(3000):
        eid = f"e{rnd.randrange(600)}"
        if eid in held and rnd.random() < 0.3:
            m.remove(eid)
            del held[eid]
        else:
            exp = now - timedelta(seconds=1) if rnd.random() < 0.05 else None
            e = entry(eid, plate(), rnd.choice(("IL", "WI", "")), expires_at=exp)
            m.upsert(e)
            held[eid] = e
        if step % 10 == 0:
            read, state = plate(), rnd.choice(("IL", ""))
            got = [(x.entry.entry_id, x.kind, x.score) for x in m.match(read, state, now)]
            assert sorted(got, key=lambda t: (-t[2], t[0])) == _reference(held, read, state, now), (read, state)
    assert len(m) == len(held)
    assert sorted(m.entry_ids("LEADS")) == sorted(held)
    assert all(m.same_content(e) for e in held.values())
    assert {e.entry_id: e.content() for e in m.entries()} == {k: e.content() for k, e in held.items()}
