"""The hot-list matcher: one implementation for the hub and the edge node.

Exact match on the normalized plate (+ state of issuance), and fuzzy matches for what
OCR gets wrong: look-alike characters (O/0/D/Q, I/1/L, B/8, S/5, Z/2, G/6) and one
missing or extra character. Every match is scored (0..1); a state mismatch lowers the
score but the match is still returned, flagged, so a person sees it.

How a read is matched without a scan of the list: every entry is indexed under its
*canonical* plate (each look-alike class folded to one character).

- exact and look-alike: one dict lookup of the read's canonical plate;
- the read has an extra character: the read's canonical plate with one character deleted
  is an entry's canonical plate — one C-level pass over those deletions against the dict;
- the read lacks a character: the read's canonical plate is an entry's canonical plate with
  one character deleted. Those deletions (seven per entry) are not stored: a Bloom filter
  over them (two bits per deletion in one ``bytearray``) answers "no" for almost every
  read, and a "maybe" is confirmed by inserting each character at each position of the
  read and looking the result up in the dict.

Memory: one entry costs its id, its canonical plate, its serialized ``alpr.v1.HotListEntry``
and a few bytes in arrays — no object per entry for the garbage collector to walk, so a
full collection of a hub holding a million entries takes milliseconds, not seconds. A
candidate entry is decoded only when a read hits it.

No hub imports; plate text must already be normalized (``alpr_common.plates.normalize_plate``).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations

from alpr.v1 import hotlist_pb2

from alpr_common.hotlist_model import CATEGORIES, SOURCES, HotListEntry, entry_from_proto, entry_to_proto

# Look-alike classes, each folded to one representative.
LOOKALIKE_CLASSES: tuple[str, ...] = ("O0DQ", "I1L", "B8", "S5", "Z2", "G6")
# Folding is a byte translation: a third of the cost of ``str.translate`` on the hot path.
_FOLD = bytes.maketrans(
    "".join(LOOKALIKE_CLASSES).encode(), "".join(cls[0] * len(cls) for cls in LOOKALIKE_CLASSES).encode()
)

EXACT = "EXACT"
LOOKALIKE = "LOOKALIKE"
MISSING_CHAR = "MISSING_CHAR"  # the read lacks one character of the entry
EXTRA_CHAR = "EXTRA_CHAR"  # the read has one character more than the entry

# The deletion filter is sized at 32 bits per deletion when (re)built and rebuilt once
# deletions, removed entries' included, reach 16 bits each: two probes, 0.4-1.4 % false "maybe".
_FILTER_BITS_PER_KEY = 32
_FILTER_REBUILD_BITS_PER_KEY = 16
_FILTER_MIN_BITS = 1 << 16
_BIT = tuple(1 << i for i in range(8))
_MAX_LEN = 32  # longer plates (none are valid) are matched exactly only, without the sets
_VERSION_TAG = b"\x70"  # alpr.v1.HotListEntry field 14 (version), varint


def canonical(plate: str) -> str:
    """Fold look-alike characters: ``"B0SS"`` and ``"8OS5"`` have the same canonical form."""
    return plate.encode().translate(_FOLD).decode()


# Every character a canonical plate can hold (plates are A-Z and 0-9 once normalized).
CANONICAL_ALPHABET = "".join(sorted({canonical(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}))


def varint(n: int) -> bytes:
    """Protobuf base-128 encoding of a non-negative integer."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def with_version(serialized: bytes, version: int) -> bytes:
    """A serialized ``HotListEntry`` with its version set (protobuf: the last value of a field wins)."""
    return serialized + _VERSION_TAG + varint(version)


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


def _diffs(a: str, b: str) -> int:
    return sum(1 for x, y in zip(a, b, strict=False) if x != y)


def _deletions(c: str) -> Iterator[str]:
    """``c`` with each one of its characters deleted (in C: ``combinations`` keeps order)."""
    return map("".join, combinations(c, len(c) - 1))


# A canonical plate's slots: one int, or a tuple when several entries share it (rare).
Slots = int | tuple[int, ...]


class Matcher:
    """An in-memory, incrementally updated index of hot-list entries."""

    def __init__(self, options: MatchOptions | None = None, entries: Iterable[HotListEntry] = ()) -> None:
        self.options = options or MatchOptions()
        self._reset()
        for e in entries:
            self.upsert(e)

    def _reset(self) -> None:
        opts = self.options
        self._slot: dict[str, int] = {}  # entry id -> slot
        self._blob: list[bytes | None] = []  # slot -> serialized alpr.v1.HotListEntry
        self._key: list[str | None] = []  # slot -> canonical plate
        self._digest = array("q")  # slot -> hash of the entry's content() (imports compare it)
        self._source = bytearray()  # slot -> index in SOURCES
        self._category = bytearray()  # slot -> index in CATEGORIES
        self._free: list[int] = []
        self._canon: dict[str, Slots] = {}  # canonical plate -> slot(s)
        self._canon_get = self._canon.get
        # The canonical plates again, as one set per length: a set probe is one memory access
        # where a dict's costs two, and a read's deletions only probe the (smaller) set of
        # plates one character shorter.
        self._by_len: list[set[str]] = [set() for _ in range(_MAX_LEN + 2)]
        # Bloom filter over the deletion neighbourhoods of the entries' canonical plates.
        self._bits = bytearray(_FILTER_MIN_BITS // 8)
        self._mask = _FILTER_MIN_BITS - 1
        self._filter_keys = 0  # deletions set in the filter, removed entries' included
        self._one_char_len = opts.one_char_min_length if opts.one_char else 1 << 30
        self._extra_min_len = self._one_char_len  # a read longer than this may have an extra character
        self._missing_min_len = self._one_char_len - 1  # ... at least this long may lack one

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._slot

    # -- changes --------------------------------------------------------------------------

    def upsert(self, e: HotListEntry, serialized: bytes | None = None) -> None:
        """Add or replace an entry (by entry_id).

        ``serialized``: the entry's ``alpr.v1.HotListEntry`` encoding (version included) when
        the caller already has it; encoded here otherwise.
        """
        if e.entry_id in self._slot:
            self.remove(e.entry_id)
        blob = serialized if serialized is not None else entry_to_proto(e).SerializeToString()
        c = self._intern_key(canonical(e.plate))
        digest = hash(e.content())
        source = SOURCES.index(e.source) if e.source in SOURCES else 255
        category = CATEGORIES.index(e.category) if e.category in CATEGORIES else 255
        if self._free:
            slot = self._free.pop()
            self._blob[slot] = blob
            self._key[slot] = c
            self._digest[slot] = digest
            self._source[slot] = source
            self._category[slot] = category
        else:
            slot = len(self._blob)
            self._blob.append(blob)
            self._key.append(c)
            self._digest.append(digest)
            self._source.append(source)
            self._category.append(category)
        self._slot[e.entry_id] = slot
        cur = self._canon_get(c)
        if cur is None:
            self._canon[c] = slot
            self._by_len[min(len(c), _MAX_LEN + 1)].add(c)
        else:
            self._canon[c] = (*cur, slot) if isinstance(cur, tuple) else (cur, slot)
        if len(c) >= self._one_char_len:
            self._filter_add(c)
            if self._filter_keys * _FILTER_REBUILD_BITS_PER_KEY > self._mask + 1:
                self._rebuild_filter()

    def _intern_key(self, c: str) -> str:
        """The dict's own key object when the canonical plate is held already (one copy in memory)."""
        cur = self._canon_get(c)
        if cur is None:
            return c
        first = cur[0] if isinstance(cur, tuple) else cur
        key = self._key[first]
        return key if key is not None else c

    def remove(self, entry_id: str) -> None:
        slot = self._slot.pop(entry_id, None)
        if slot is None:
            return
        c = self._key[slot]
        assert c is not None
        cur = self._canon[c]
        if isinstance(cur, tuple):
            rest = tuple(s for s in cur if s != slot)
            self._canon[c] = rest[0] if len(rest) == 1 else rest
        else:
            del self._canon[c]
            self._by_len[min(len(c), _MAX_LEN + 1)].discard(c)
        # The deletions stay in the filter (a "maybe" is confirmed against the dict) until
        # the next rebuild.
        self._blob[slot] = None
        self._key[slot] = None
        self._free.append(slot)

    def clear(self) -> None:
        self._reset()

    def _filter_add(self, c: str) -> None:
        bits, mask, bit = self._bits, self._mask, _BIT
        for h in map(hash, _deletions(c)):
            i = h & mask
            bits[i >> 3] |= bit[i & 7]
            i = (h >> 32) & mask
            bits[i >> 3] |= bit[i & 7]
        self._filter_keys += len(c)

    def reserve(self, more: int) -> None:
        """Size the filter for ``more`` entries about to be added: one rebuild now instead of
        one at each doubling while a bulk change (an import, a snapshot) is applied."""
        keys = (len(self._slot) + more) * 7  # deletions of a typical plate
        if keys * _FILTER_REBUILD_BITS_PER_KEY > self._mask + 1:
            self._rebuild_filter(keys)

    def _rebuild_filter(self, keys: int = 0) -> None:
        """A filter sized for the entries held now (or ``keys`` deletions), without removed ones'."""
        held = sum(len(c) for c in self._canon if len(c) >= self._one_char_len)
        size = _filter_size(max(keys, held))
        self._bits = bytearray(size // 8)
        self._mask = size - 1
        self._filter_keys = 0
        for c in self._canon:
            if len(c) >= self._one_char_len:
                self._filter_add(c)

    # -- reading entries ------------------------------------------------------------------

    def _entry(self, slot: int) -> HotListEntry:
        blob = self._blob[slot]
        assert blob is not None
        return entry_from_proto(hotlist_pb2.HotListEntry.FromString(blob))

    def get(self, entry_id: str) -> HotListEntry | None:
        slot = self._slot.get(entry_id)
        return None if slot is None else self._entry(slot)

    def entries(self, source: str | None = None, category: str | None = None) -> Iterator[HotListEntry]:
        """Every entry (of ``source``, of ``category``), decoded one at a time."""
        want_source = SOURCES.index(source) if source in SOURCES else None
        want_category = CATEGORIES.index(category) if category in CATEGORIES else None
        for slot in list(self._slot.values()):
            if want_source is not None and self._source[slot] != want_source:
                continue
            if want_category is not None and self._category[slot] != want_category:
                continue
            if self._blob[slot] is not None:
                yield self._entry(slot)

    def entry_ids(self, source: str) -> list[str]:
        """Ids of the entries of one source."""
        want = SOURCES.index(source)
        src = self._source
        return [eid for eid, slot in self._slot.items() if src[slot] == want]

    def same_content(self, e: HotListEntry) -> bool:
        """Whether an entry with ``e``'s id is held with the same content (an import's "unchanged")."""
        slot = self._slot.get(e.entry_id)
        return slot is not None and self._digest[slot] == hash(e.content())

    def serialized(self) -> list[bytes]:
        """Every entry's ``alpr.v1.HotListEntry`` encoding (for snapshots)."""
        return [b for b in self._blob if b is not None]

    def by_plate(self, plate: str) -> list[HotListEntry]:
        """Entries whose plate is exactly ``plate`` (normalized)."""
        return [e for e in map(self._entry, _iter(self._canon_get(canonical(plate)))) if e.plate == plate]

    # -- matching -------------------------------------------------------------------------

    def match(self, plate: str, state: str = "", now: datetime | None = None) -> list[Match]:
        """Entries matching a read's normalized plate and state, best first; [] for no hit."""
        c = plate.encode().translate(_FOLD).decode()
        n = len(c)
        maybe_missing = False
        if n >= self._missing_min_len:
            h = hash(c)
            bits, mask = self._bits, self._mask
            i = h & mask
            if bits[i >> 3] >> (i & 7) & 1:
                i = (h >> 32) & mask
                maybe_missing = bool(bits[i >> 3] >> (i & 7) & 1)
        if n > _MAX_LEN:
            return self._score(plate, state, c, self._canon_get(c), maybe_missing, None, now)
        # Two C-level probes: the read's canonical plate (exact, look-alike) and, when long
        # enough, each of its deletions (an extra character in the read).
        by_len = self._by_len
        if (
            not maybe_missing
            and c not in by_len[n]
            and (n <= self._extra_min_len or by_len[n - 1].isdisjoint(_deletions(c)))
        ):
            return []
        found = self._canon_get(c)
        extra = None
        if n > self._extra_min_len:
            get = self._canon_get
            extra = [i for i in range(n) if get(c[:i] + c[i + 1 :]) is not None] or None
        return self._score(plate, state, c, found, maybe_missing, extra, now)

    def _missing_slots(self, c: str) -> list[int]:
        """Slots of entries whose canonical plate is ``c`` with one character inserted."""
        get = self._canon_get
        out: list[int] = []
        for j in range(len(c) + 1):
            pre, post = c[:j], c[j:]
            for x in CANONICAL_ALPHABET:
                hit = get(pre + x + post)
                if hit is not None:
                    out.extend(_iter(hit))
        return list(dict.fromkeys(out))

    def _score(
        self,
        plate: str,
        state: str,
        c: str,
        found: Slots | None,
        maybe_missing: bool,
        maybe_extra: list[int] | None,
        now: datetime | None,
    ) -> list[Match]:
        opts = self.options
        now = now or datetime.now(UTC)
        best: dict[str, Match] = {}
        entry = self._entry

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

        for e in map(entry, _iter(found)):
            if e.plate == plate:
                offer(e, EXACT, 1.0)
            elif opts.lookalike:
                offer(e, LOOKALIKE, 1.0 - opts.lookalike_penalty * _diffs(plate, e.plate))
        if maybe_missing:
            for e in map(entry, self._missing_slots(c)):
                # The read lacks one character: find where, count the look-alikes elsewhere.
                d = min(
                    (_diffs(plate, e.plate[:j] + e.plate[j + 1 :]) for j in range(len(e.plate))
                     if canonical(e.plate[:j] + e.plate[j + 1 :]) == c),
                    default=None,
                )  # fmt: skip
                if d is None or (d and not opts.lookalike):
                    continue
                offer(e, MISSING_CHAR, 1.0 - opts.one_char_penalty - opts.lookalike_penalty * d)
        if maybe_extra:
            for i in maybe_extra:
                hit = self._canon_get(c[:i] + c[i + 1 :])
                if hit is None:
                    continue
                shorter = plate[:i] + plate[i + 1 :]
                for e in map(entry, _iter(hit)):
                    d = _diffs(shorter, e.plate)
                    if d and not opts.lookalike:
                        continue
                    offer(e, EXTRA_CHAR, 1.0 - opts.one_char_penalty - opts.lookalike_penalty * d)
        return sorted(best.values(), key=lambda m: (-m.score, m.entry.priority, m.entry.entry_id))


def _filter_size(keys: int) -> int:
    size = _FILTER_MIN_BITS
    while size < keys * _FILTER_BITS_PER_KEY:
        size <<= 1
    return size


def _iter(v: Slots | None) -> tuple[int, ...]:
    if v is None:
        return ()
    return v if isinstance(v, tuple) else (v,)
