"""The hot-list matcher: one implementation for the hub and the edge node.

Exact match on the normalized plate (+ state of issuance), and fuzzy matches for what
OCR gets wrong: look-alike characters (O/0/D/Q, I/1/L, B/8, S/5, Z/2, G/6) and one
missing or extra character. Every match is scored (0..1); a state mismatch lowers the
score but the match is still returned, flagged, so a person sees it.

Speed comes from precomputed keys: every entry is indexed under its *canonical* plate
(each look-alike class folded to one character) and, for one-character tolerance, under
every canonical plate with one character deleted (a deletion neighbourhood). A read then
costs one dict lookup for exact + look-alike, one for "the read lacks a character" and
one per character for "the read has an extra character" — no scan of the list.

Pure Python, no hub imports; plate text must already be normalized
(``alpr_common.plates.normalize_plate``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from alpr_common.hotlist_model import HotListEntry

# Look-alike classes, each folded to one representative.
LOOKALIKE_CLASSES: tuple[str, ...] = ("O0DQ", "I1L", "B8", "S5", "Z2", "G6")
_FOLD = str.maketrans({c: cls[0] for cls in LOOKALIKE_CLASSES for c in cls})

EXACT = "EXACT"
LOOKALIKE = "LOOKALIKE"
MISSING_CHAR = "MISSING_CHAR"  # the read lacks one character of the entry
EXTRA_CHAR = "EXTRA_CHAR"  # the read has one character more than the entry


def canonical(plate: str) -> str:
    """Fold look-alike characters: ``"B0SS"`` and ``"8OS5"`` have the same canonical form."""
    return plate.translate(_FOLD)


@dataclass(frozen=True, slots=True)
class MatchOptions:
    """What counts as a match and how it is scored (hub config ``hotlists.match``)."""

    lookalike: bool = True
    one_char: bool = True
    # Plates shorter than this never match with a missing/extra character (too many false hits).
    one_char_min_length: int = 5
    lookalike_penalty: float = 0.05  # per look-alike substitution
    one_char_penalty: float = 0.25
    state_mismatch_penalty: float = 0.3
    state_unknown_penalty: float = 0.05  # the read has no state, the entry has one
    min_score: float = 0.4


@dataclass(frozen=True, slots=True)
class Match:
    entry: HotListEntry
    kind: str
    score: float
    state_mismatch: bool


# An index slot holds one entry, or a tuple when several share the key (rare; saves memory).
Hit = HotListEntry | tuple[HotListEntry, ...]
Index = dict[str, Hit]


def _diffs(a: str, b: str) -> int:
    return sum(1 for x, y in zip(a, b, strict=False) if x != y)


def _add(index: Index, key: str, e: HotListEntry) -> None:
    cur = index.get(key)
    if cur is None:
        index[key] = e
    elif isinstance(cur, tuple):
        index[key] = (*[x for x in cur if x.entry_id != e.entry_id], e)
    elif cur.entry_id == e.entry_id:
        index[key] = e
    else:
        index[key] = (cur, e)


def _discard(index: Index, key: str, entry_id: str) -> None:
    cur = index.get(key)
    if cur is None:
        return
    if isinstance(cur, tuple):
        rest = tuple(x for x in cur if x.entry_id != entry_id)
        if not rest:
            del index[key]
        else:
            index[key] = rest[0] if len(rest) == 1 else rest
    elif cur.entry_id == entry_id:
        del index[key]


class Matcher:
    """An in-memory, incrementally updated index of hot-list entries."""

    def __init__(self, options: MatchOptions | None = None, entries: Iterable[HotListEntry] = ()) -> None:
        self.options = options or MatchOptions()
        self.entries: dict[str, HotListEntry] = {}
        self._canon: Index = {}  # canonical plate -> entry | tuple of entries
        self._dels: Index = {}  # canonical plate minus one char -> entry | tuple
        # Hot path: bound lookups and the length above which an extra character is tried.
        self._canon_get = self._canon.get
        self._dels_get = self._dels.get
        self._extra_min_len = self.options.one_char_min_length if self.options.one_char else 1 << 30
        for e in entries:
            self.upsert(e)

    def __len__(self) -> int:
        return len(self.entries)

    def _del_keys(self, c: str) -> set[str]:
        if not self.options.one_char or len(c) < self.options.one_char_min_length:
            return set()
        return {c[:i] + c[i + 1 :] for i in range(len(c))}

    def upsert(self, e: HotListEntry) -> None:
        """Add or replace an entry (by entry_id)."""
        if e.entry_id in self.entries:
            self.remove(e.entry_id)
        self.entries[e.entry_id] = e
        c = canonical(e.plate)
        _add(self._canon, c, e)
        for k in self._del_keys(c):
            _add(self._dels, k, e)

    def remove(self, entry_id: str) -> None:
        e = self.entries.pop(entry_id, None)
        if e is None:
            return
        c = canonical(e.plate)
        _discard(self._canon, c, entry_id)
        for k in self._del_keys(c):
            _discard(self._dels, k, entry_id)

    def clear(self) -> None:
        self.entries.clear()
        self._canon.clear()
        self._dels.clear()

    def by_plate(self, plate: str) -> list[HotListEntry]:
        """Entries whose plate is exactly ``plate`` (normalized)."""
        return [e for e in _iter(self._canon.get(canonical(plate))) if e.plate == plate]

    def match(self, plate: str, state: str = "", now: datetime | None = None) -> list[Match]:
        """Entries matching a read's normalized plate and state, best first; [] for no hit."""
        c = plate.translate(_FOLD)
        get = self._canon_get
        found = get(c)
        missing = self._dels_get(c)
        extra = None
        n = len(c)
        if n > self._extra_min_len:
            for i in range(n):
                hit = get(c[:i] + c[i + 1 :])
                if hit is not None:
                    if extra is None:
                        extra = []
                    extra.append((i, hit))
        if found is None and missing is None and extra is None:
            return []
        return self._score(plate, state, c, found, missing, extra, now)

    def _score(
        self,
        plate: str,
        state: str,
        c: str,
        found: Hit | None,
        missing: Hit | None,
        extra: list[tuple[int, Hit]] | None,
        now: datetime | None,
    ) -> list[Match]:
        opts = self.options
        now = now or datetime.now(UTC)
        best: dict[str, Match] = {}

        def offer(e: HotListEntry, kind: str, score: float) -> None:
            if e.expired(now):
                return
            mismatch = False
            if e.state:
                if not state:
                    score -= opts.state_unknown_penalty
                elif state != e.state:
                    score -= opts.state_mismatch_penalty
                    mismatch = True
            score = round(max(0.0, score), 4)
            if score < opts.min_score:
                return
            prev = best.get(e.entry_id)
            if prev is None or score > prev.score:
                best[e.entry_id] = Match(e, kind, score, mismatch)

        for e in _iter(found):
            if e.plate == plate:
                offer(e, EXACT, 1.0)
            elif opts.lookalike:
                offer(e, LOOKALIKE, 1.0 - opts.lookalike_penalty * _diffs(plate, e.plate))
        for e in _iter(missing):
            # The read lacks one character: find where, count the look-alikes elsewhere.
            d = min(
                (_diffs(plate, e.plate[:j] + e.plate[j + 1 :]) for j in range(len(e.plate))
                 if canonical(e.plate[:j] + e.plate[j + 1 :]) == c),
                default=0,
            )  # fmt: skip
            if d and not opts.lookalike:
                continue
            offer(e, MISSING_CHAR, 1.0 - opts.one_char_penalty - opts.lookalike_penalty * d)
        for i, hit in extra or ():
            shorter = plate[:i] + plate[i + 1 :]
            for e in _iter(hit):
                d = _diffs(shorter, e.plate)
                if d and not opts.lookalike:
                    continue
                offer(e, EXTRA_CHAR, 1.0 - opts.one_char_penalty - opts.lookalike_penalty * d)
        return sorted(best.values(), key=lambda m: (-m.score, m.entry.priority, m.entry.entry_id))


def _iter(v: Hit | None) -> tuple[HotListEntry, ...]:
    if v is None:
        return ()
    return v if isinstance(v, tuple) else (v,)
