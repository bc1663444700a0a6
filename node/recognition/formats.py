"""Plate-format-guided decoding of the OCR's per-slot probabilities.

The OCR reads each character slot on its own; it has no idea that a California plate is
digit-letter-letter-letter-digit-digit-digit. When its best reading fits no known serial
format but a close alternative does (the second choice of one or two uncertain slots, e.g.
an open-top "4" first read as "L"), the alternative is taken if its probability is at least
``min_ratio`` times the best reading's. Vanity plates and anything else that no alternative
fits closely keep the OCR's best reading. This is how commercial engines use regional
templates; the templates here are the standard-issue serial formats of US states (the same
list the synthetic training plates are drawn from).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

# L = letter, D = digit, X = either; separators are not part of the read text.
US_SERIAL_FORMATS: dict[str, tuple[str, ...]] = {
    "CA": ("DLLLDDD",),
    "TX": ("LLL-DDDD", "LLDDLDD"),
    "NY": ("LLL-DDDD",),
    "FL": ("LLL-LDD", "DDD-LLL", "LLLD DD"),
    "IL": ("LL DDDDD", "LDD DDDD"),
    "PA": ("LLL-DDDD",),
    "OH": ("LLL DDDD",),
    "MI": ("LLL DDDD", "DLLLDD"),
    "GA": ("LLL DDDD",),
    "NC": ("LLL-DDDD",),
    "NJ": ("LDDLLL", "LLL-DDL"),
    "VA": ("LLL-DDDD",),
    "WA": ("LLLDDDD",),
    "MA": ("DLLLDD", "DLLDDD"),
    "AZ": ("LLLDDDD",),
    "CO": ("LLL-LDD", "DDD-LLL"),
    "MN": ("DDD-LLL", "LLL-DDD"),
    "MD": ("DLL DDDD",),
    "IN": ("DDDLLL", "DDDL"),
    "TN": ("LDD-DDL", "DDD-LLL"),
    "NV": ("DLL DDD", "DDL-DDD"),
    "OR": ("DDD LLL",),
    "CT": ("LL-DDDDD", "DLLLDD"),
    "WI": ("LLL-DDDD",),
    "NH": ("DDD DDDD",),
    "DE": ("DDDDDD",),
    "KS": ("DDD LLL",),
    "MO": ("LLD-LDL",),
    "SC": ("LLL DDD",),
    "HI": ("LLL DDD",),
}


def template_regex(template: str) -> str:
    """``DLLLDDD`` → ``^[0-9][A-Z][A-Z][A-Z][0-9][0-9][0-9]$`` (separators dropped)."""
    classes = {"L": "[A-Z]", "D": "[0-9]", "X": "[A-Z0-9]"}
    return "^" + "".join(classes[c] for c in template if c in classes) + "$"


def us_format_regexes() -> list[str]:
    """Every distinct US serial format as a regex."""
    return sorted({template_regex(t) for ts in US_SERIAL_FORMATS.values() for t in ts})


class FormatDecoder:
    """Turns slot probabilities into text, preferring readings that fit a known format."""

    def __init__(
        self,
        alphabet: str,
        pad_char: str,
        patterns: Iterable[str],
        min_ratio: float = 0.1,
        beam: int = 64,
        per_slot: int = 3,
    ) -> None:
        self.alphabet = alphabet
        self.pad = pad_char
        self.patterns = [re.compile(p) for p in patterns]
        self.min_ratio = min_ratio
        self.beam = beam
        self.per_slot = per_slot

    def fits(self, text: str) -> bool:
        return any(p.match(text) for p in self.patterns)

    def _text(self, idx: Iterable[int]) -> str:
        return "".join(self.alphabet[i] for i in idx).replace(self.pad, "")

    def decode(self, probs: npt.NDArray[np.floating]) -> tuple[tuple[int, ...], bool]:
        """The chosen class of every slot, and whether a format overruled the OCR's best reading."""
        best = tuple(int(c) for c in probs.argmax(axis=1))
        if not self.patterns or self.min_ratio <= 0 or self.fits(self._text(best)):
            return best, False
        logp = np.log(np.clip(probs, 1e-12, 1.0))
        upper = [float(logp[i:, :].max(axis=1).sum()) for i in range(len(best) + 1)]  # best possible rest
        floor = upper[0] + float(np.log(self.min_ratio))
        # beam search over each slot's few likeliest classes, pruned below the floor
        beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        for i in range(len(best)):
            opts = np.argsort(-logp[i])[: self.per_slot]
            grown = [(s + float(logp[i, c]), (*seq, int(c))) for s, seq in beams for c in opts]
            beams = [b for b in heapq.nlargest(self.beam, grown, key=lambda b: b[0]) if b[0] + upper[i + 1] >= floor]
        pad = self.alphabet.index(self.pad)
        for _score, seq in sorted(beams, reverse=True):
            if self.fits(self._text(seq)) and _pads_trail(seq, pad):
                return seq, True
        return best, False


def _pads_trail(seq: tuple[int, ...], pad: int) -> bool:
    """Pads only at the end: a pad between characters is not a plate the model was taught."""
    seen_pad = False
    for c in seq:
        if c == pad:
            seen_pad = True
        elif seen_pad:
            return False
    return True
