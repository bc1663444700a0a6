"""Plate text normalization and validation shared by node, hub and matcher."""

from __future__ import annotations

import re

# Separators people and OCR put inside plates; they are not part of the registration.
_SEPARATORS = re.compile(r"[\s\-\.·•_/]+")
PLATE_CHARSET = re.compile(r"^[A-Z0-9]+$")


def normalize_plate(text: str) -> str:
    """Upper-case and strip separators: ``"abc-1234 "`` → ``"ABC1234"``."""
    return _SEPARATORS.sub("", text).upper()


def plate_problem(text: str, min_len: int = 1, max_len: int = 8) -> str | None:
    """Why ``text`` (already normalized) is not a plausible plate, or None when it is."""
    if not text:
        return "plate_text is empty"
    if not PLATE_CHARSET.match(text):
        bad = sorted({c for c in text if not ("A" <= c <= "Z" or "0" <= c <= "9")})
        return (
            f"plate_text contains characters other than A-Z and 0-9: {''.join(bad)[:20]!r}; "
            "send the normalized plate (upper case, no separators)"
        )
    if not min_len <= len(text) <= max_len:
        return f"plate_text has {len(text)} characters; expected {min_len} to {max_len}"
    return None
