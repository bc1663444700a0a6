"""Format-guided decoding of OCR slot probabilities (pure logic, no model)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from node.recognition.formats import US_SERIAL_FORMATS, FormatDecoder, template_regex, us_format_regexes

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"


def slots(*choices: dict[str, float], slots: int = 8) -> npt.NDArray[np.float64]:
    """A slots x classes matrix: each dict gives the probabilities of a slot; rest is pad."""
    out = np.full((slots, len(ALPHABET)), 1e-4)
    for i in range(slots):
        dist = choices[i] if i < len(choices) else {"_": 0.99}
        for ch, p in dist.items():
            out[i, ALPHABET.index(ch)] = p
    normalised: npt.NDArray[np.float64] = out / out.sum(axis=1, keepdims=True)
    return normalised


def test_template_regexes() -> None:
    assert template_regex("DLLLDDD") == "^[0-9][A-Z][A-Z][A-Z][0-9][0-9][0-9]$"
    assert template_regex("LLL-DDDD") == "^[A-Z][A-Z][A-Z][0-9][0-9][0-9][0-9]$"
    assert "^[0-9][A-Z][A-Z][A-Z][0-9][0-9][0-9]$" in us_format_regexes()
    assert set(US_SERIAL_FORMATS) >= {"CA", "TX", "NY", "IL"}


def test_an_uncertain_slot_is_corrected_to_the_format() -> None:
    dec = FormatDecoder(ALPHABET, "_", us_format_regexes(), min_ratio=0.1)
    # An open-top 4 read as L (0.6), 4 the second choice (0.35): "LPCI264" fits no format, "4PCI264" (CA) does.
    p = slots({"L": 0.6, "4": 0.35}, {"P": 0.95}, {"C": 0.9}, {"I": 0.9}, {"2": 0.9}, {"6": 0.9}, {"4": 0.9})
    seq, changed = dec.decode(p)
    assert changed and "".join(ALPHABET[i] for i in seq).rstrip("_") == "4PCI264"


def test_plates_that_fit_or_are_far_from_any_format_keep_the_best_reading() -> None:
    dec = FormatDecoder(ALPHABET, "_", us_format_regexes(), min_ratio=0.1)
    fits = slots({"A": 0.9}, {"B": 0.9}, {"C": 0.9}, {"1": 0.9}, {"2": 0.9}, {"3": 0.9}, {"4": 0.9})
    assert dec.decode(fits) == (tuple(int(i) for i in fits.argmax(axis=1)), False)
    # "L639520" fits Illinois' LDD DDDD: not second-guessed, although 4 was a close second
    il = slots({"L": 0.6, "4": 0.35}, {"6": 0.95}, {"3": 0.9}, {"9": 0.9}, {"5": 0.9}, {"2": 0.9}, {"0": 0.9})
    assert dec.decode(il)[1] is False
    # a vanity plate: the only fitting alternative is far less likely than the reading
    vanity = slots({"C": 0.97}, {"E": 0.97}, {"M": 0.97}, {"E": 0.97}, {"N": 0.97}, {"T": 0.97}, {"0": 0.97})
    seq, changed = dec.decode(vanity)
    assert not changed and "".join(ALPHABET[i] for i in seq).rstrip("_") == "CEMENT0"
    off = FormatDecoder(ALPHABET, "_", us_format_regexes(), min_ratio=0.0)
    p = slots({"L": 0.6, "4": 0.35}, {"P": 0.95}, {"C": 0.9}, {"I": 0.9}, {"2": 0.9}, {"6": 0.9}, {"4": 0.9})
    assert off.decode(p)[1] is False
